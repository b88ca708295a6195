//! Our CPU kernels against MLX's own ops, forward and backward, on shapes
//! that are not multiples of the vector width or of the kernels' blocks.

use finetune::kernels::{mlx_reference, ours, CrossEntropyRows, RopeSpec};
use mlx_rs::error::Exception;
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::transforms::fallible_vjp;
use mlx_rs::{random, Array};

/// A computation over traced inputs and constant ones (indices, segments).
type Op = fn(&[Array], &[Array]) -> Result<Array, Exception>;

/// Largest |a − b| relative to the largest |b| (at least 1).
fn relative_difference(a: &Array, b: &Array) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let diff: f32 = a
        .subtract(b)
        .unwrap()
        .abs()
        .unwrap()
        .max(None)
        .unwrap()
        .item_exact();
    let scale: f32 = b.abs().unwrap().max(None).unwrap().item_exact();
    diff / scale.max(1.0)
}

/// Compares outputs and the gradients of every traced input under a random
/// cotangent.
fn compare(ours: Op, reference: Op, inputs: &[Array], constants: &[Array], tolerance: f32) {
    let expected = reference(inputs, constants).unwrap();
    let got = ours(inputs, constants).unwrap();
    let forward = relative_difference(&got, &expected);
    assert!(forward < tolerance, "forward differs by {forward}");

    let cotangent = random::normal::<f32>(expected.shape(), None, None, None).unwrap();
    let grads = |f: Op| {
        let (_, g) = fallible_vjp(
            move |args: &[Array]| Ok(vec![f(args, constants)?]),
            inputs,
            std::slice::from_ref(&cotangent),
        )
        .unwrap();
        g
    };
    let (g_ours, g_ref) = (grads(ours), grads(reference));
    for i in 0..inputs.len() {
        let d = relative_difference(&g_ours[i], &g_ref[i]);
        assert!(d < tolerance, "gradient of input {i} differs by {d}");
    }
}

fn normal(shape: &[i32]) -> Array {
    random::normal::<f32>(shape, None, None, None).unwrap()
}

#[test]
fn swiglu_matches_mlx() {
    random::seed(1).unwrap();
    let ours: Op = |a, _| ours::swiglu(&a[0], &a[1]);
    let reference: Op = |a, _| mlx_reference::swiglu(&a[0], &a[1]);
    for shape in [[3, 37, 101], [1, 1, 1], [2, 5, 1536]] {
        let gate = normal(&shape).multiply(Array::from_f32(4.0)).unwrap();
        compare(ours, reference, &[gate, normal(&shape)], &[], 2e-5);
    }
}

#[test]
fn causal_attention_matches_mlx() {
    random::seed(2).unwrap();
    let ours: Op = |a, _| ours::causal_attention(&a[0], &a[1], &a[2], None, 0.2);
    let reference: Op = |a, _| mlx_reference::causal_attention(&a[0], &a[1], &a[2], None, 0.2);
    // Grouped queries (6 heads over 2), a length past one 64-row block.
    for (b, h, kv, l, d) in [(2, 6, 2, 77, 24), (1, 3, 3, 5, 7), (1, 2, 1, 130, 64)] {
        let inputs = [
            normal(&[b, h, l, d]),
            normal(&[b, kv, l, d]),
            normal(&[b, kv, l, d]),
        ];
        compare(ours, reference, &inputs, &[], 2e-5);
    }
}

#[test]
fn packed_attention_stays_inside_each_example() {
    random::seed(3).unwrap();
    let ours: Op = |a, c| ours::causal_attention(&a[0], &a[1], &a[2], Some(&c[0]), 0.3);
    let reference: Op =
        |a, c| mlx_reference::causal_attention(&a[0], &a[1], &a[2], Some(&c[0]), 0.3);
    let (b, h, kv, l, d) = (2, 4, 2, 70, 16);
    // Row 0: three examples then padding (-1); row 1: an id in two runs,
    // which the kernel must handle without its contiguous-run shortcut.
    let mut segments = Vec::new();
    for i in 0..l {
        segments.push(match i {
            0..=20 => 0,
            21..=50 => 1,
            51..=60 => 2,
            _ => -1,
        });
    }
    for i in 0..l {
        segments.push(if (i / 9) % 2 == 0 { 5 } else { 7 });
    }
    let segments = Array::from_slice(&segments, &[b, l]);
    let inputs = [
        normal(&[b, h, l, d]),
        normal(&[b, kv, l, d]),
        normal(&[b, kv, l, d]),
    ];
    compare(ours, reference, &inputs, &[segments], 2e-5);
}

#[test]
fn linear_cross_entropy_matches_mlx() {
    random::seed(4).unwrap();
    let ours: Op =
        |a, c| ours::linear_cross_entropy(&a[0], &a[1], &c[0], CrossEntropyRows::default());
    let reference: Op = |a, c| {
        mlx_reference::linear_cross_entropy(&a[0], &a[1], &c[0], CrossEntropyRows::default())
    };
    for (n, e, v) in [(50, 33, 517), (3, 8, 70_001), (600, 16, 97)] {
        let targets = random::randint::<_, i32>(0, v, &[n], None).unwrap();
        let inputs = [
            normal(&[n, e]),
            normal(&[v, e]).multiply(Array::from_f32(0.3)).unwrap(),
        ];
        compare(ours, reference, &inputs, &[targets], 2e-5);
    }
}

/// With `differentiated`, the kernel makes the hidden states' gradient in
/// its forward pass (an online softmax over vocabulary blocks) and skips
/// masked rows: the same values and gradients as MLX's ops.
#[test]
fn differentiated_cross_entropy_matches_mlx() {
    random::seed(6).unwrap();
    // (300, 20, 40_001) spans two vocabulary blocks; (7, 5, 97) one.
    for (n, e, v) in [(50, 33, 517), (300, 20, 40_001), (7, 5, 97)] {
        let targets = random::randint::<_, i32>(0, v, &[n], None).unwrap();
        let weight = normal(&[v, e]).multiply(Array::from_f32(0.3)).unwrap();
        let mask: Vec<f32> = (0..n).map(|i| if i % 4 == 1 { 0.0 } else { 1.0 }).collect();
        let mask = Array::from_slice(&mask, &[n]);
        let hidden = normal(&[n, e]).multiply(Array::from_f32(2.0)).unwrap();
        let cotangent = normal(&[n]);
        let run = |ours_kernel: bool, differentiated: bool| {
            let rows = CrossEntropyRows {
                mask: Some(&mask),
                differentiated,
            };
            let (values, grads) = fallible_vjp(
                |args: &[Array]| {
                    let nll = if ours_kernel {
                        ours::linear_cross_entropy(&args[0], &weight, &targets, rows)?
                    } else {
                        mlx_reference::linear_cross_entropy(&args[0], &weight, &targets, rows)?
                    };
                    Ok(vec![nll])
                },
                std::slice::from_ref(&hidden),
                std::slice::from_ref(&cotangent),
            )
            .unwrap();
            (values[0].clone(), grads[0].clone())
        };
        let (expected, expected_grad) = run(false, false);
        for differentiated in [true, false] {
            let (got, grad) = run(true, differentiated);
            let forward = relative_difference(&got, &expected);
            let backward = relative_difference(&grad, &expected_grad);
            assert!(forward < 2e-5, "{n}×{e}×{v}: forward differs by {forward}");
            // Sums over a 40,001-entry vocabulary in float32: measured
            // 2.4e-5 relative, with or without the forward-made gradient.
            assert!(
                backward < 5e-5,
                "{n}×{e}×{v} ({differentiated}): gradient differs by {backward}"
            );
        }
        // A masked row: value and gradient exactly 0.
        let (got, grad) = run(true, true);
        let row_value: f32 = got.index(1).item_exact();
        let row_grad: f32 = grad.index(1).abs().unwrap().sum(None).unwrap().item_exact();
        assert_eq!((row_value, row_grad), (0.0, 0.0));
    }
}

#[test]
fn masked_rows_get_no_gradient() {
    random::seed(5).unwrap();
    let (n, e, v) = (40, 12, 300);
    let hidden = normal(&[n, e]);
    let weight = normal(&[v, e]);
    let targets = random::randint::<_, i32>(0, v, &[n], None).unwrap();
    let mask: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { 1.0 }).collect();
    let mask = Array::from_slice(&mask, &[n]);
    let loss = |f: Op| {
        let (_, g) = fallible_vjp(
            |args: &[Array]| {
                Ok(vec![f(args, std::slice::from_ref(&targets))?
                    .multiply(&mask)?
                    .sum(None)?])
            },
            &[hidden.clone(), weight.clone()],
            &[Array::from_f32(1.0)],
        )
        .unwrap();
        g
    };
    let g_ours =
        loss(|a, c| ours::linear_cross_entropy(&a[0], &a[1], &c[0], CrossEntropyRows::default()));
    let g_ref = loss(|a, c| {
        mlx_reference::linear_cross_entropy(&a[0], &a[1], &c[0], CrossEntropyRows::default())
    });
    for i in 0..2 {
        assert!(relative_difference(&g_ours[i], &g_ref[i]) < 2e-5);
    }
    let first_row: f32 = g_ours[0]
        .index(0)
        .abs()
        .unwrap()
        .sum(None)
        .unwrap()
        .item_exact();
    assert_eq!(first_row, 0.0);
}

#[test]
fn lora_linear_matches_mlx() {
    random::seed(7).unwrap();
    // Gradients of x, A and B (the frozen weight a constant, as in LoRA
    // training), and of all four (the weight's through MLX's product).
    let ours: Op = |a, c| ours::lora_linear(&a[0], &c[0], &a[1], &a[2], 1.7);
    let reference: Op = |a, c| mlx_reference::lora_linear(&a[0], &c[0], &a[1], &a[2], 1.7);
    let all_ours: Op = |a, _| ours::lora_linear(&a[0], &a[1], &a[2], &a[3], 0.5);
    let all_reference: Op = |a, _| mlx_reference::lora_linear(&a[0], &a[1], &a[2], &a[3], 0.5);
    for (lead, input, output, rank) in [
        (vec![3, 37], 20, 13, 4),
        (vec![1], 5, 7, 1),
        (vec![2, 65], 96, 33, 8),
        // Ranks 9–16 (two vector lanes), rows split across threads, output
        // widths past a 64-column block; and a rank the BLAS takes (> 16).
        (vec![300], 70, 150, 13),
        (vec![517], 130, 129, 16),
        (vec![2, 41], 40, 64, 24),
    ] {
        let x = normal(&[lead.as_slice(), &[input]].concat());
        let weight = normal(&[output, input]);
        let (a, b) = (normal(&[input, rank]), normal(&[rank, output]));
        compare(
            ours,
            reference,
            &[x.clone(), a.clone(), b.clone()],
            std::slice::from_ref(&weight),
            2e-5,
        );
        compare(all_ours, all_reference, &[x, weight, a, b], &[], 2e-5);
    }
}

#[test]
fn rms_norm_matches_mlx() {
    random::seed(8).unwrap();
    let ours: Op = |a, _| ours::rms_norm(&a[0], &a[1], 1e-5);
    let reference: Op = |a, _| mlx_reference::rms_norm(&a[0], &a[1], 1e-5);
    // Frozen weight (as in LoRA training): only x's gradient is asked for.
    let frozen: Op = |a, c| ours::rms_norm(&a[0], &c[0], 1e-6);
    let frozen_reference: Op = |a, c| mlx_reference::rms_norm(&a[0], &c[0], 1e-6);
    for shape in [vec![3, 7, 33], vec![1, 5], vec![130, 576], vec![2, 1]] {
        let d = *shape.last().unwrap();
        let x = normal(&shape).multiply(Array::from_f32(3.0)).unwrap();
        let weight = normal(&[d]);
        compare(ours, reference, &[x.clone(), weight.clone()], &[], 2e-5);
        compare(frozen, frozen_reference, &[x], &[weight], 2e-5);
    }
}

/// Llama's RoPE over head size 24, every feature turned.
const PLAIN_ROPE: RopeSpec<'static> = RopeSpec {
    dims: 24,
    base: 10_000.0,
    periods: None,
    scale: 1.0,
    offset: 0,
};

/// (B, L, H, D) → the transposed (B, H, L, D) view the attention reads.
fn as_heads(x: &Array) -> Result<Array, Exception> {
    x.transpose_axes(&[0, 2, 1, 3])
}

#[test]
fn rope_matches_mlx() {
    random::seed(9).unwrap();
    let ours: Op = |a, _| ours::rope(&as_heads(&a[0])?, PLAIN_ROPE);
    let reference: Op = |a, _| mlx_reference::rope(&as_heads(&a[0])?, PLAIN_ROPE);
    // (B, L, H, D): a length past 100 positions.
    compare(ours, reference, &[normal(&[2, 130, 3, 24])], &[], 2e-5);
    // Partial rotary (16 of 40 features), linear scaling, an offset, and
    // llama3-style periods given directly.
    let x = as_heads(&normal(&[1, 37, 2, 40])).unwrap();
    let periods = Array::from_slice(&[1.0f32, 3.0, 9.5, 40.0, 100.0, 800.0, 5e3, 9e4], &[8]);
    for spec in [
        RopeSpec {
            dims: 16,
            scale: 0.25,
            offset: 5,
            ..PLAIN_ROPE
        },
        RopeSpec {
            dims: 16,
            offset: 3,
            periods: Some(&periods),
            ..PLAIN_ROPE
        },
    ] {
        let got = ours::rope(&x, spec).unwrap();
        let expected = mlx_reference::rope(&x, spec).unwrap();
        let d = relative_difference(&got, &expected);
        assert!(d < 2e-5, "{spec:?}: differs by {d}");
    }
}

#[test]
fn bad_shapes_are_reported() {
    let e = ours::causal_attention(
        &normal(&[1, 3, 4, 8]),
        &normal(&[1, 2, 4, 8]),
        &normal(&[1, 2, 4, 8]),
        None,
        1.0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("multiple of KV"), "{e}");
    let e = ours::swiglu(&normal(&[2, 3]), &normal(&[3, 2])).unwrap_err();
    assert!(e.to_string().contains("same shape"), "{e}");
    let e = ours::lora_linear(
        &normal(&[2, 6]),
        &normal(&[4, 6]),
        &normal(&[5, 2]),
        &normal(&[2, 4]),
        1.0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("lora_a (in, r)"), "{e}");
}
