//! Smoke tests of our MLX build through mlx-rs: if these pass, the sys crate,
//! the wheel's libmlx and the BLAS it uses are wired correctly.

use std::collections::HashMap;

use finetune::mlx_rs::{
    self, array,
    error::Exception,
    module::Module,
    nn::{self, Linear},
    ops,
    optimizers::{AdamW, Optimizer},
    transforms, Array,
};

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn array_ops_compute_exact_values() {
    let a = array!([[1.0f32, 2.0], [3.0, 4.0]]);
    let b = array!([[5.0f32, 6.0], [7.0, 8.0]]);
    let sum = (&a + &b).as_slice::<f32>().to_vec();
    assert_eq!(sum, vec![6.0, 8.0, 10.0, 12.0]);
    let product = a.matmul(&b).unwrap();
    assert_eq!(product.as_slice::<f32>(), &[19.0, 22.0, 43.0, 50.0]);
    let softmax = ops::softmax_axis(&array!([0.0f32, 0.0, 0.0, 0.0]), -1, None).unwrap();
    assert!(softmax
        .as_slice::<f32>()
        .iter()
        .all(|v| close(*v, 0.25, 1e-6)));
    let total: f32 = a.sum(None).unwrap().item_exact();
    assert_eq!(total, 10.0);
}

#[test]
fn large_matmul_is_correct() {
    // Through whichever BLAS is linked: ones(n, n) @ ones(n, n) = n everywhere.
    let n = 512;
    let ones = ops::ones::<f32>(&[n, n]).unwrap();
    let product = ones.matmul(&ones).unwrap();
    let min: f32 = product.min(None).unwrap().item_exact();
    let max: f32 = product.max(None).unwrap().item_exact();
    assert_eq!((min, max), (n as f32, n as f32));
}

#[test]
fn value_and_grad_matches_the_analytic_gradient() {
    // f(x) = sum(x^3) has gradient 3x^2.
    let f = |args: &[Array]| -> Result<Vec<Array>, Exception> {
        Ok(vec![args[0].power(array!(3.0f32))?.sum(None)?])
    };
    let mut vg = transforms::value_and_grad(f);
    let x = array!([1.0f32, -2.0, 0.5]);
    let (value, grad) = vg(&[x]).unwrap();
    let value: f32 = value[0].item_exact();
    assert!(close(value, 1.0 - 8.0 + 0.125, 1e-6));
    let expected = [3.0f32, 12.0, 0.75];
    for (g, e) in grad[0].as_slice::<f32>().iter().zip(expected) {
        assert!(close(*g, e, 1e-5), "{g} vs {e}");
    }
}

#[test]
fn adamw_steps_lower_a_regression_loss() {
    mlx_rs::random::seed(7).unwrap();
    let mut model = Linear::new(4, 1).unwrap();
    let x = mlx_rs::random::normal::<f32>(&[64, 4], None, None, None).unwrap();
    let true_w = array!([[1.5f32], [-2.0], [0.5], [3.0]]);
    let y = x.matmul(&true_w).unwrap();

    let loss_fn = |model: &mut Linear, (x, y): (&Array, &Array)| -> Result<Array, Exception> {
        model.forward(x)?.subtract(y)?.square()?.mean(None)
    };
    let mut vg = nn::value_and_grad(loss_fn);
    let mut optimizer = AdamW::new(0.1);

    let mut losses = Vec::new();
    for _ in 0..60 {
        let (loss, grads) = vg(&mut model, (&x, &y)).unwrap();
        optimizer.update(&mut model, grads).unwrap();
        losses.push(loss.item_exact::<f32>());
    }
    let first = losses[0];
    let last = *losses.last().unwrap();
    assert!(first > 1.0, "initial loss {first} should be large");
    assert!(last < first * 0.05, "loss went {first} -> {last}");
}

#[test]
fn safetensors_round_trip_keeps_values_and_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    let weight = mlx_rs::random::normal::<f32>(&[3, 5], None, None, None).unwrap();
    let half = weight.as_dtype(mlx_rs::Dtype::Float16).unwrap();
    let ids = array!([1i32, 2, 3]);
    let arrays: HashMap<&str, &Array> =
        HashMap::from([("w", &weight), ("w16", &half), ("ids", &ids)]);
    Array::save_safetensors(arrays, None, &path).unwrap();

    let loaded = Array::load_safetensors(&path).unwrap();
    assert_eq!(loaded.len(), 3);
    assert_eq!(loaded["w"].shape(), &[3, 5]);
    assert_eq!(loaded["w"].as_slice::<f32>(), weight.as_slice::<f32>());
    assert_eq!(loaded["w16"].dtype(), mlx_rs::Dtype::Float16);
    assert_eq!(loaded["ids"].as_slice::<i32>(), &[1, 2, 3]);
}

#[test]
fn memory_stats_track_allocations() {
    mlx_rs::memory::reset_peak_memory().unwrap();
    let before = mlx_rs::memory::active_memory().unwrap();
    let big = ops::ones::<f32>(&[1024, 1024]).unwrap();
    big.eval().unwrap();
    let during = mlx_rs::memory::active_memory().unwrap();
    let peak = mlx_rs::memory::peak_memory().unwrap();
    assert!(during >= before + 4 * 1024 * 1024, "{before} -> {during}");
    assert!(peak >= during);
    drop(big);
    // Freed buffers move to MLX's cache; clearing it must succeed.
    mlx_rs::memory::clear_cache().unwrap();
    assert!(mlx_rs::memory::active_memory().unwrap() < during);
}
