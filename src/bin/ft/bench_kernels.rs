//! `ft bench --kernels`: our CPU kernels against MLX's own ops, forward and
//! forward + backward, at the shapes of `make bench` (SmolLM2-135M, batch 4
//! × 512 tokens).

use std::time::Instant;

use finetune::kernels::{mlx_reference, ours};
use finetune::mlx_rs::error::Exception;
use finetune::mlx_rs::transforms::{eval, fallible_vjp};
use finetune::mlx_rs::{random, Array};

type Op = fn(&[Array], &[Array]) -> Result<Array, Exception>;

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
            ours: |a, c| ours::linear_cross_entropy(&a[0], &a[1], &c[0], Default::default()),
            mlx: |a, c| {
                mlx_reference::linear_cross_entropy(&a[0], &a[1], &c[0], Default::default())
            },
            inputs: vec![
                normal(&[n, e])?,
                normal(&[v, e])?.multiply(Array::from_f32(0.02))?,
            ],
            constants: vec![random::randint::<_, i32>(0, v, &[n], None)?],
        },
    ])
}

/// Median seconds of `repeats` evaluations of the forward pass, and of the
/// forward + backward pass (gradients of the first input only, as in LoRA
/// training where the frozen weights need none).
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
        let rest: Vec<Array> = case.inputs[1..].to_vec();
        let constants = case.constants.clone();
        let (outs, grads) = fallible_vjp(
            move |x: &[Array]| {
                let mut all = vec![x[0].clone()];
                all.extend(rest.iter().cloned());
                Ok(vec![op(&all, &constants)?.sum(None)?])
            },
            &case.inputs[..1],
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
