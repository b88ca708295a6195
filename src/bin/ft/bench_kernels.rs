//! `ft bench --kernels`: our CPU kernels against MLX's own ops, forward and
//! forward + backward, at the shapes of `make bench` (SmolLM2-135M, batch 4
//! × 512 tokens).

use std::time::Instant;

use finetune::kernels::{mlx_reference, ours, CrossEntropyRows};
use finetune::mlx_rs::error::Exception;
use finetune::mlx_rs::transforms::{eval, fallible_vjp};
use finetune::mlx_rs::{random, Array};

type Op = fn(&[Array], &[Array]) -> Result<Array, Exception>;

const TRAINING: CrossEntropyRows<'static> = CrossEntropyRows {
    mask: None,
    differentiated: true,
};

/// One computation: `inputs` are differentiated (as training does), the
/// `constants` (frozen weights, indices) are not.
struct Case {
    name: &'static str,
    ours: Op,
    mlx: Op,
    inputs: Vec<Array>,
    constants: Vec<Array>,
}

fn normal(shape: &[i32]) -> anyhow::Result<Array> {
    Ok(random::normal::<f32>(shape, None, None, None)?)
}

fn cases() -> anyhow::Result<Vec<Case>> {
    let (b, h, kv, l, d) = (4, 9, 3, 512, 64);
    let (n, e, v) = (b * l, 576, 49152);
    Ok(vec![
        Case {
            name: "swiglu 4×512×1536",
            ours: |a, _| ours::swiglu(&a[0], &a[1]),
            mlx: |a, _| mlx_reference::swiglu(&a[0], &a[1]),
            inputs: vec![normal(&[b, l, 1536])?, normal(&[b, l, 1536])?],
            constants: vec![],
        },
        Case {
            name: "causal attention 4×9(3)×512×64",
            ours: |a, _| ours::causal_attention(&a[0], &a[1], &a[2], None, 0.125),
            mlx: |a, _| mlx_reference::causal_attention(&a[0], &a[1], &a[2], None, 0.125),
            inputs: vec![
                normal(&[b, h, l, d])?,
                normal(&[b, kv, l, d])?,
                normal(&[b, kv, l, d])?,
            ],
            constants: vec![],
        },
        Case {
            name: "lm head + cross-entropy 2048×576×49152",
            ours: |a, c| ours::linear_cross_entropy(&a[0], &c[0], &c[1], Default::default()),
            mlx: |a, c| {
                mlx_reference::linear_cross_entropy(&a[0], &c[0], &c[1], Default::default())
            },
            inputs: vec![normal(&[n, e])?],
            constants: vec![
                normal(&[v, e])?.multiply(Array::from_f32(0.02))?,
                random::randint::<_, i32>(0, v, &[n], None)?,
            ],
        },
        Case {
            // As training calls it: the forward pass also makes the hidden
            // states' gradient, so the backward pass has no logits to redo.
            name: "  the same, differentiated (training)",
            ours: |a, c| ours::linear_cross_entropy(&a[0], &c[0], &c[1], TRAINING),
            mlx: |a, c| mlx_reference::linear_cross_entropy(&a[0], &c[0], &c[1], TRAINING),
            inputs: vec![normal(&[n, e])?],
            constants: vec![
                normal(&[v, e])?.multiply(Array::from_f32(0.02))?,
                random::randint::<_, i32>(0, v, &[n], None)?,
            ],
        },
        Case {
            name: "LoRA projection 2048×576→1536, r 8",
            ours: |a, c| ours::lora_linear(&a[0], &c[0], &a[1], &a[2], 2.0),
            mlx: |a, c| mlx_reference::lora_linear(&a[0], &c[0], &a[1], &a[2], 2.0),
            inputs: vec![normal(&[n, e])?, normal(&[e, 8])?, normal(&[8, 1536])?],
            constants: vec![normal(&[1536, e])?],
        },
        Case {
            name: "RMSNorm 4×512×576",
            ours: |a, c| ours::rms_norm(&a[0], &c[0], 1e-5),
            mlx: |a, c| mlx_reference::rms_norm(&a[0], &c[0], 1e-5),
            inputs: vec![normal(&[b, l, e])?],
            constants: vec![normal(&[e])?],
        },
    ])
}

/// Median seconds of `repeats` evaluations of the forward pass, and of the
/// forward + backward pass (gradients of every input, none of the
/// constants: frozen weights need none in LoRA training).
fn time(op: Op, case: &Case, repeats: usize) -> anyhow::Result<(f64, f64)> {
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    for i in 0..=repeats {
        let start = Instant::now();
        let out = op(&case.inputs, &case.constants)?;
        eval([&out])?;
        let f = start.elapsed().as_secs_f64();

        let start = Instant::now();
        let constants = case.constants.clone();
        let (outs, grads) = fallible_vjp(
            move |x: &[Array]| Ok(vec![op(x, &constants)?.sum(None)?]),
            &case.inputs,
            &[Array::from_f32(1.0)],
        )?;
        eval(outs.iter().chain(grads.iter()))?;
        let fb = start.elapsed().as_secs_f64();
        if i > 0 {
            forward.push(f);
            backward.push(fb);
        }
    }
    Ok((median(forward), median(backward)))
}

pub fn run(repeats: usize, json: bool) -> anyhow::Result<()> {
    random::seed(0)?;
    let mut rows = Vec::new();
    for case in cases()? {
        let (of, ob) = time(case.ours, &case, repeats)?;
        let (mf, mb) = time(case.mlx, &case, repeats)?;
        rows.push(serde_json::json!({
            "kernel": case.name,
            "ours_forward_ms": of * 1e3, "ours_forward_backward_ms": ob * 1e3,
            "mlx_forward_ms": mf * 1e3, "mlx_forward_backward_ms": mb * 1e3,
        }));
        if !json {
            println!(
                "{:40} forward {:8.1} ms vs MLX {:8.1} ms ({:4.1}×)   fwd+bwd {:8.1} ms vs MLX {:8.1} ms ({:4.1}×)",
                case.name,
                of * 1e3,
                mf * 1e3,
                mf / of,
                ob * 1e3,
                mb * 1e3,
                mb / ob
            );
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(())
}
