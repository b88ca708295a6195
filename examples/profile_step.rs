//! Where the time of one LoRA training step goes on this machine: times the
//! forward pass, forward + backward, and the main operations at the shapes
//! of SmolLM2-135M with batch × length tokens — with FineTune's CPU kernels,
//! or MLX's own ops when run with FINETUNE_CPU_KERNELS=off.
//!
//! With PROFILE_NO_LORA=1 the model gets no adapters (the forward pass
//! alone then shows what the adapters cost).
//!
//! cargo run --release --example profile_step -- [MODEL] [BATCH] [LENGTH]

use std::time::Instant;

use finetune::eval::nll_from_hidden;
use finetune::kernels;
use finetune::lora::{self, LoraConfig};
use finetune::mlx_rs::{self, nn, Array};
use finetune::model::{self, LoadOptions, Model};

/// Mean milliseconds of `runs` calls after a warm-up; none at all (NaN)
/// when `runs` is 0.
fn time<T>(label: &str, runs: usize, mut f: impl FnMut() -> T) -> f64 {
    if runs == 0 {
        return f64::NAN;
    }
    f(); // warm-up
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / runs as f64;
    println!("{label:<44} {ms:>9.1} ms");
    ms
}

fn eval(a: &Array) {
    a.eval().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| finetune::paths::default_model().display().to_string());
    let batch: i32 = args.get(2).map_or(4, |v| v.parse().unwrap());
    let length: i32 = args.get(3).map_or(256, |v| v.parse().unwrap());
    let options = LoadOptions {
        dequantize: true,
        ..Default::default()
    };
    let mut loaded = model::load(path.as_ref(), &options).unwrap();
    let m = &mut loaded.model;
    if std::env::var("PROFILE_NO_LORA").is_err() {
        lora::apply(m, &LoraConfig::default()).unwrap();
    }
    let Model::Llama(llama) = &*m else {
        panic!("profile_step profiles Llama-family models");
    };
    let cfg = llama.config.clone();
    let (h, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let n = batch * length;
    println!(
        "batch {batch} x length {length} = {n} tokens; hidden {h}, ffn {f}, vocab {v}; {}",
        if kernels::enabled() {
            "FineTune's CPU kernels"
        } else {
            "MLX's own ops"
        }
    );

    let tokens = mlx_rs::random::randint::<_, i32>(0, v, &[batch, length], None).unwrap();
    let targets = mlx_rs::random::randint::<_, i32>(0, v, &[batch, length], None).unwrap();
    let mask = Array::ones::<f32>(&[batch, length]).unwrap();

    let layer_only = std::env::var("PROFILE_LAYER_RUNS").is_ok();
    let fwd = time("forward (logits)", if layer_only { 0 } else { 2 }, || {
        eval(&m.forward(&tokens, None).unwrap())
    });
    let loss_fn = |m: &mut Model,
                   (x, y, k): (&Array, &Array, &Array)|
     -> Result<Array, mlx_rs::error::Exception> {
        let h = m.hidden_states(x, None)?;
        let rows = kernels::CrossEntropyRows {
            mask: Some(k),
            differentiated: true,
        };
        nll_from_hidden(m, &h, y, rows)?
            .multiply(k)?
            .sum(None)?
            .divide(k.sum(None)?)
    };
    let mut vg = nn::value_and_grad(loss_fn);
    let step = time(
        "forward + backward (loss, LoRA grads)",
        if layer_only { 0 } else { 2 },
        || {
            let (loss, grads) = vg(m, (&tokens, &targets, &mask)).unwrap();
            let mut all: Vec<&Array> = vec![&loss];
            all.extend(grads.values());
            mlx_rs::transforms::eval(all).unwrap();
        },
    );
    println!(
        "=> {:.1} tokens/s (all tokens trained)",
        n as f64 / step * 1000.0
    );

    // One decoder layer with adapters (the last): its forward and its
    // backward (gradients of its input and its adapters) against the time
    // its frozen weights' products alone take.
    let last = cfg.num_hidden_layers as usize - 1;
    let hidden = mlx_rs::random::normal::<f32>(&[batch, length, h], None, None, None).unwrap();
    let cot = mlx_rs::random::normal::<f32>(&[batch, length, h], None, None, None).unwrap();
    let Model::Llama(llama) = &mut *m else {
        unreachable!()
    };
    let layer_fwd = time("one adapted layer: forward", 3, || {
        eval(&llama.layer(last, &hidden, None, 0, None).unwrap())
    });
    let layer_fn =
        |m: &mut Model, (x, c): (&Array, &Array)| -> Result<Array, mlx_rs::error::Exception> {
            let Model::Llama(l) = m else { unreachable!() };
            l.layer(last, x, None, 0, None)?.multiply(c)?.sum(None)
        };
    let mut layer_vg = nn::value_and_grad(layer_fn);
    // PROFILE_LAYER_RUNS=n repeats the layer's step n times (to profile it
    // alone with perf) before timing it.
    let runs: usize = std::env::var("PROFILE_LAYER_RUNS").map_or(3, |v| v.parse().unwrap());
    let layer_step = time("one adapted layer: forward + backward", runs, || {
        let (v, grads) = layer_vg(m, (&hidden, &cot)).unwrap();
        let mut all: Vec<&Array> = vec![&v];
        all.extend(grads.values());
        mlx_rs::transforms::eval(all).unwrap();
    });
    let x = mlx_rs::random::normal::<f32>(&[n, h], None, None, None).unwrap();
    let kv_dim = cfg.kv_heads() * cfg.head_dim();
    let weights: Vec<Array> = [
        (h, h),
        (kv_dim, h),
        (kv_dim, h),
        (h, h),
        (f, h),
        (f, h),
        (h, f),
    ]
    .iter()
    .map(|&(o, i)| mlx_rs::random::normal::<f32>(&[o, i], None, None, None).unwrap())
    .collect();
    let inputs: Vec<Array> = weights
        .iter()
        .map(|w| mlx_rs::random::normal::<f32>(&[n, w.shape()[1]], None, None, None).unwrap())
        .collect();
    let grads_out: Vec<Array> = weights
        .iter()
        .map(|w| mlx_rs::random::normal::<f32>(&[n, w.shape()[0]], None, None, None).unwrap())
        .collect();
    let products_fwd = time("  its 7 frozen products x·Wᵀ", 3, || {
        let ys: Vec<Array> = inputs
            .iter()
            .zip(&weights)
            .map(|(x, w)| x.matmul(w.t()).unwrap())
            .collect();
        mlx_rs::transforms::eval(ys.iter()).unwrap();
    });
    let products_bwd = time("  and their input gradients dy·W", 3, || {
        let ys: Vec<Array> = grads_out
            .iter()
            .zip(&weights)
            .map(|(d, w)| d.matmul(w).unwrap())
            .collect();
        mlx_rs::transforms::eval(ys.iter()).unwrap();
    });
    println!(
        "  layer overhead beyond its frozen products: forward {:.1} ms, backward {:.1} ms",
        layer_fwd - products_fwd,
        layer_step - layer_fwd - products_bwd
    );

    let w_up = mlx_rs::random::normal::<f32>(&[f, h], None, None, None).unwrap();
    let head = mlx_rs::random::normal::<f32>(&[v, h], None, None, None).unwrap();
    time("matmul x·W_upᵀ (n×576 · 576×1536)", 3, || {
        eval(&x.matmul(w_up.t()).unwrap())
    });
    let logits = x.matmul(head.t()).unwrap();
    eval(&logits);
    time("matmul lm_head (n×576 · 576×49152)", 2, || {
        eval(&x.matmul(head.t()).unwrap())
    });
    let flat_targets = targets.reshape(&[n]).unwrap();
    time("lm_head + cross-entropy (kernels::)", 2, || {
        eval(&kernels::linear_cross_entropy(&x, &head, &flat_targets, Default::default()).unwrap())
    });
    let g = mlx_rs::random::normal::<f32>(&[n, f], None, None, None).unwrap();
    time("silu(gate) * up (n×1536, kernels::)", 3, || {
        eval(&kernels::swiglu(&g, &g).unwrap())
    });
    let wn = Array::ones::<f32>(&[h]).unwrap();
    time("rms_norm (n×576, kernels::)", 3, || {
        eval(&kernels::rms_norm(&x, &wn, 1e-5).unwrap())
    });
    let heads = cfg.num_attention_heads;
    let d = cfg.head_dim();
    let q = mlx_rs::random::normal::<f32>(&[batch, heads, length, d], None, None, None).unwrap();
    let kv = mlx_rs::random::normal::<f32>(&[batch, cfg.kv_heads(), length, d], None, None, None)
        .unwrap();
    time("rope (q, kernels::)", 3, || {
        let spec = kernels::RopeSpec {
            dims: d,
            base: 10000.0,
            periods: None,
            scale: 1.0,
            offset: 0,
        };
        eval(&kernels::rope(&q, spec).unwrap())
    });
    time("causal attention (kernels::)", 3, || {
        eval(&kernels::causal_attention(&q, &kv, &kv, None, 0.125).unwrap())
    });
    println!("forward share of step: {:.0}%", 100.0 * fwd / step);
}
