//! DoRA, adapter dropout, gradient accumulation, sequence packing, QLoRA,
//! and gradients checked against finite differences — on tiny random models.

mod common;

use std::path::Path;

use common::{
    max_abs_diff, tiny_config as config, train_events as run, write_chat_data, TinyModel,
};
use finetune::eval::token_nll;
use finetune::lora::{self, LoraConfig};
use finetune::mlx_rs::{self, ops::indexing::IndexOp, Array};
use finetune::model::{self, LoadOptions, Model};
use finetune::train::{TrainConfig, TrainEvent};

fn tokens(ids: &[i32]) -> Array {
    Array::from_slice(ids, &[1, ids.len() as i32])
}

fn steps(events: &[TrainEvent]) -> Vec<(f32, f32)> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step {
                loss, grad_norm, ..
            } => Some((*loss, *grad_norm)),
            _ => None,
        })
        .collect()
}

fn assert_loss_falls(events: &[TrainEvent]) {
    let s = steps(events);
    let (first, last) = (s[0].0, s.last().unwrap().0);
    assert!(last < first * 0.7, "loss {first} -> {last}");
}

/// Gives every adapter's B random values, so adapters change the output.
fn randomize_b(model: &mut Model) {
    for p in model.projections_mut() {
        if let Some(b) = p.lora_b.value.as_mut() {
            *b = mlx_rs::random::normal::<f32>(b.shape(), None, Some(0.1), None).unwrap();
        }
    }
}

#[test]
fn dora_starts_as_the_base_trains_saves_loads_and_fuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let ids = tokens(&[3, 70, 71, 140, 9, 33]);
    let mut m = model::load(&dir, &LoadOptions::default()).unwrap().model;
    let base = m.forward(&ids, None).unwrap();
    let config = LoraConfig {
        rank: 4,
        dora: true,
        ..Default::default()
    };
    lora::apply(&mut m, &config).unwrap();
    // m starts at ‖W‖ and B at zero: the same function as the base.
    assert!(max_abs_diff(&m.forward(&ids, None).unwrap(), &base) < 1e-5);
    randomize_b(&mut m);
    for p in m.projections_mut() {
        if let Some(mag) = p.m.value.as_mut() {
            *mag = mag.multiply(Array::from_f32(1.1)).unwrap();
        }
    }
    let adapted = m.forward(&ids, None).unwrap();
    assert!(max_abs_diff(&adapted, &base) > 1e-3);

    let out = tmp.path().join("dora");
    lora::save_mlx_adapters(&m, &config, &out).unwrap();
    let saved = std::fs::read_to_string(out.join("adapter_config.json")).unwrap();
    assert!(saved.contains("\"fine_tune_type\": \"dora\""), "{saved}");
    let weights = Array::load_safetensors(out.join("adapters.safetensors")).unwrap();
    assert!(weights.contains_key("model.layers.0.self_attn.q_proj.m"));

    let mut loaded = model::load(&dir, &LoadOptions::default()).unwrap();
    let read = lora::load_adapters(&mut loaded.model, &out).unwrap();
    assert!(read.dora);
    assert!(max_abs_diff(&loaded.model.forward(&ids, None).unwrap(), &adapted) < 1e-5);
    finetune::export::fuse_adapters(&mut loaded).unwrap();
    assert!(!loaded.model.has_lora());
    assert!(max_abs_diff(&loaded.model.forward(&ids, None).unwrap(), &adapted) < 1e-4);

    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config_with(tmp.path(), 30, |c| c.lora.dora = true);
    cfg.lora.rank = 4;
    assert_loss_falls(&run(&cfg));
}

fn config_with(tmp: &Path, iters: usize, edit: impl FnOnce(&mut TrainConfig)) -> TrainConfig {
    let mut c = config(tmp, iters);
    edit(&mut c);
    c
}

#[test]
fn dropout_acts_only_while_training() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let ids = tokens(&[3, 70, 71, 140, 9, 33]);
    let mut m = model::load(&dir, &LoadOptions::default()).unwrap().model;
    let config = LoraConfig {
        dropout: 0.5,
        ..Default::default()
    };
    lora::apply(&mut m, &config).unwrap();
    randomize_b(&mut m);
    let eval_a = m.forward(&ids, None).unwrap();
    let eval_b = m.forward(&ids, None).unwrap();
    assert_eq!(max_abs_diff(&eval_a, &eval_b), 0.0);
    m.set_training(true);
    let train_out = m.forward(&ids, None).unwrap();
    assert!(max_abs_diff(&train_out, &eval_a) > 1e-4);
    m.set_training(false);

    let tmp = tempfile::tempdir().unwrap();
    assert_loss_falls(&run(&config_with(tmp.path(), 30, |c| c.lora.dropout = 0.1)));
}

#[test]
fn accumulating_two_half_batches_equals_one_full_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("four");
    std::fs::create_dir_all(&data).unwrap();
    let data = write_chat_data(&data, 4);
    let full = run(&config_with(tmp.path(), 1, |c| {
        c.data = data.clone();
        c.output = tmp.path().join("a");
    }));
    let halves = run(&config_with(tmp.path(), 1, |c| {
        c.data = data.clone();
        c.output = tmp.path().join("b");
        c.batch_size = 2;
        c.grad_accumulation = 2;
    }));
    let (a, b) = (steps(&full)[0], steps(&halves)[0]);
    assert!((a.0 - b.0).abs() < 1e-5, "loss {a:?} vs {b:?}");
    assert!(
        (a.1 - b.1).abs() < 1e-4 * a.1.max(1.0),
        "grad norm {a:?} vs {b:?}"
    );
}

#[test]
fn a_packed_row_computes_what_each_example_computes_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let mut m = model::load(&dir, &LoadOptions::default()).unwrap().model;
    let (a, b) = ([3, 70, 71, 140, 9], [33, 12, 200, 7, 8, 99, 4]);
    let alone_a = m.forward(&tokens(&a), None).unwrap();
    let alone_b = m.forward(&tokens(&b), None).unwrap();
    let packed: Vec<i32> = a.iter().chain(&b).copied().collect();
    let segments: Vec<i32> = [0; 5].iter().chain(&[1; 7]).copied().collect();
    let out = m
        .forward_packed(&tokens(&packed), &Array::from_slice(&segments, &[1, 12]))
        .unwrap();
    assert!(max_abs_diff(&out.index((.., ..5, ..)), &alone_a) < 1e-4);
    assert!(max_abs_diff(&out.index((.., 5.., ..)), &alone_b) < 1e-4);

    let tmp = tempfile::tempdir().unwrap();
    let events = run(&config_with(tmp.path(), 30, |c| {
        c.packing = true;
        c.batch_size = 1;
    }));
    assert_loss_falls(&events);
    // 8 short examples share rows of 64 tokens: fewer rows than examples.
    let TrainEvent::Started {
        steps_per_epoch, ..
    } = events[0]
    else {
        panic!()
    };
    assert!(
        steps_per_epoch > 0 && steps_per_epoch < 8,
        "{steps_per_epoch} rows"
    );
}

#[test]
fn qlora_trains_adapters_over_a_4_bit_base() {
    let tmp = tempfile::tempdir().unwrap();
    let events = run(&config_with(tmp.path(), 30, |c| c.qlora_bits = Some(4)));
    assert_loss_falls(&events);
    let Some(TrainEvent::Started {
        trainable_parameters,
        total_parameters,
        ..
    }) = events.first()
    else {
        panic!()
    };
    // The same adapters as over a dense base; the base counted as dense.
    let dense = run(&config_with(tempfile::tempdir().unwrap().path(), 1, |_| {}));
    let Some(TrainEvent::Started {
        trainable_parameters: t2,
        total_parameters: p2,
        ..
    }) = dense.first()
    else {
        panic!()
    };
    assert_eq!((trainable_parameters, total_parameters), (t2, p2));
}

/// Mean masked cross-entropy, as the trainer computes it.
fn loss(m: &mut Model, inputs: &Array, targets: &Array) -> Array {
    let logits = m.forward(inputs, None).unwrap();
    token_nll(&logits, targets).unwrap().mean(None).unwrap()
}

#[test]
fn adapter_gradients_agree_with_finite_differences() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let mut m = model::load(&dir, &LoadOptions::default()).unwrap().model;
    lora::apply(
        &mut m,
        &LoraConfig {
            rank: 2,
            ..Default::default()
        },
    )
    .unwrap();
    randomize_b(&mut m);
    let inputs = tokens(&[3, 70, 71, 140, 9, 33, 12, 5]);
    let targets = tokens(&[70, 71, 140, 9, 33, 12, 5, 200]);
    let loss_fn = |m: &mut Model,
                   (x, y): (&Array, &Array)|
     -> Result<Array, mlx_rs::error::Exception> { Ok(loss(m, x, y)) };
    let mut value_and_grad = mlx_rs::nn::value_and_grad(loss_fn);
    let (_, grads) = value_and_grad(&mut m, (&inputs, &targets)).unwrap();
    use mlx_rs::module::ModuleParameters;
    for key in [
        "model.layers.0.self_attn.q_proj.lora_b",
        "model.layers.1.mlp.down_proj.lora_a",
    ] {
        let grad = &grads[key];
        for flat in [0usize, 3, 7] {
            let eps = 1e-2f32;
            let mut at = |delta: f32| -> f32 {
                let mut params = m.parameters_mut().flatten();
                let p: &mut Array = params.get_mut(key).unwrap();
                let shape = p.shape().to_vec();
                let mut values: Vec<f32> = p.as_slice::<f32>().to_vec();
                values[flat] += delta;
                *p = Array::from_slice(&values, &shape);
                let l: f32 = loss(&mut m, &inputs, &targets).item_exact();
                let mut params = m.parameters_mut().flatten();
                let p: &mut Array = params.get_mut(key).unwrap();
                let mut values: Vec<f32> = p.as_slice::<f32>().to_vec();
                values[flat] -= delta;
                *p = Array::from_slice(&values, &shape);
                l
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            let analytic = grad.flatten(None, None).unwrap().as_slice::<f32>()[flat];
            assert!(
                (numeric - analytic).abs() < 2e-2 * analytic.abs().max(1e-2),
                "{key}[{flat}]: finite difference {numeric}, gradient {analytic}"
            );
        }
    }
}

#[test]
fn packing_a_gpt2_is_refused_with_the_reason() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/gpt2");
    let mut m = model::load(&path, &LoadOptions::default()).unwrap().model;
    let err = m
        .forward_packed(&tokens(&[1, 2, 3]), &Array::from_slice(&[0, 0, 1], &[1, 3]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absolute"), "{err}");
}
