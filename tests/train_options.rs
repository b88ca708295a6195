//! Training options on the tiny model: each optimizer trains and resumes
//! exactly, full fine-tuning of the last layers, mixed precision, and our
//! CPU kernels against MLX's own ops over a whole run.

mod common;

use std::path::Path;

use common::{max_abs_diff, step_losses, tiny_config, train_events};
use finetune::lora;
use finetune::mlx_rs::module::ModuleParameters;
use finetune::mlx_rs::{Array, Dtype};
use finetune::model::{self, LoadOptions};
use finetune::train::config::Precision;
use finetune::train::{resume, train, OptimizerKind, TrainConfig, TrainControl, TrainEvent};

/// Runs `config` to the end, and again stopped after `stop_after` steps and
/// resumed from its checkpoint; returns both runs' step losses.
fn straight_and_resumed(config: &TrainConfig, stop_after: usize) -> (Vec<f32>, Vec<f32>) {
    let straight = step_losses(&train_events(config));

    let control = TrainControl::default();
    let mut first = Vec::new();
    let mut observer = |e: &TrainEvent| {
        if let TrainEvent::Step { step, .. } = e {
            if *step == stop_after {
                control.cancel();
            }
        }
        first.push(e.clone());
    };
    train(config, &mut observer, &control).unwrap();
    let mut rest = Vec::new();
    let mut observer = |e: &TrainEvent| rest.push(e.clone());
    resume(config, &mut observer, &TrainControl::default()).unwrap();
    let mut losses = step_losses(&first);
    losses.extend(step_losses(&rest));
    (straight, losses)
}

fn with_checkpoints(tmp: &Path, iters: usize) -> TrainConfig {
    let mut config = tiny_config(tmp, iters);
    config.checkpoint_dir = Some(tmp.join("checkpoints"));
    config
}

#[test]
fn every_optimizer_trains_and_resumes_exactly() {
    for (kind, lr) in [
        (OptimizerKind::Adam, 1e-2),
        (OptimizerKind::Sgd, 0.5),
        (OptimizerKind::Adafactor, 1e-2),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = with_checkpoints(tmp.path(), 8);
        config.optimizer = kind;
        config.learning_rate = lr;
        let (straight, resumed) = straight_and_resumed(&config, 3);
        assert_eq!(straight.len(), 8, "{kind:?}");
        assert_eq!(straight, resumed, "{kind:?}: resumed run differs");
        assert!(
            straight[7] < straight[0] * 0.9,
            "{kind:?}: loss {} -> {}",
            straight[0],
            straight[7]
        );
    }
}

#[test]
fn the_optimizers_differ() {
    let losses = |kind| {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = tiny_config(tmp.path(), 3);
        config.optimizer = kind;
        step_losses(&train_events(&config))
    };
    // Same first loss (same start), different updates after it.
    let (adamw, sgd) = (losses(OptimizerKind::Adamw), losses(OptimizerKind::Sgd));
    assert_eq!(adamw[0], sgd[0]);
    assert_ne!(adamw[2], sgd[2]);
}

#[test]
fn full_fine_tuning_trains_the_last_layers_weights_and_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = with_checkpoints(tmp.path(), 10);
    config.lora.full = true;
    config.lora.num_layers = Some(1);
    config.learning_rate = 3e-3;
    let events = train_events(&config);
    let Some(TrainEvent::Started {
        trainable_parameters,
        ..
    }) = events.first()
    else {
        panic!("no started event")
    };
    let losses = step_losses(&events);
    assert!(
        losses[9] < losses[0] * 0.7,
        "loss {} -> {}",
        losses[0],
        losses[9]
    );

    // What was trained: the last layer's projections, no adapters.
    let saved = finetune::files::load_arrays(&config.output.join("adapters.safetensors")).unwrap();
    let last = layer_count(&config.model) - 1;
    assert!(
        saved
            .keys()
            .all(|k| k.starts_with(&format!("model.layers.{last}.")) && k.ends_with(".weight")),
        "{:?}",
        saved.keys()
    );
    let count: usize = saved.values().map(Array::size).sum();
    assert_eq!(count, *trainable_parameters);
    let adapter_config =
        std::fs::read_to_string(config.output.join("adapter_config.json")).unwrap();
    assert!(
        adapter_config.contains("\"fine_tune_type\": \"full\""),
        "{adapter_config}"
    );

    // Loading them gives the trained model's logits; PEFT export refuses.
    let tokens = Array::from_slice(&[1i32, 5, 9, 2], &[1, 4]);
    let mut trained = model::load(&config.model, &LoadOptions::default()).unwrap();
    lora::load_adapters(&mut trained.model, &config.output).unwrap();
    let mut base = model::load(&config.model, &LoadOptions::default()).unwrap();
    let a = trained.model.forward(&tokens, None).unwrap();
    let b = base.model.forward(&tokens, None).unwrap();
    assert!(
        max_abs_diff(&a, &b) > 1e-3,
        "the weights did not change the output"
    );
    let err =
        finetune::peft::mlx_to_peft(&config.output, &tmp.path().join("peft"), "base").unwrap_err();
    assert!(err.to_string().contains("fused"), "{err}");
}

/// Decoder layers of the tiny model at `dir`.
fn layer_count(dir: &Path) -> usize {
    model::load(dir, &LoadOptions::default())
        .unwrap()
        .model
        .num_layers()
}

#[test]
fn mixed_precision_keeps_adapters_in_float32() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = tiny_config(tmp.path(), 6);
    config.precision = Precision::Bfloat16;
    let losses = step_losses(&train_events(&config));
    assert!(losses[5] < losses[0], "loss {} -> {}", losses[0], losses[5]);
    let saved = finetune::files::load_arrays(&config.output.join("adapters.safetensors")).unwrap();
    assert!(saved.values().all(|a| a.dtype() == Dtype::Float32));

    // The first loss (B = 0: the base model's) is the float32 one to
    // bfloat16's precision.
    let tmp32 = tempfile::tempdir().unwrap();
    let f32_losses = step_losses(&train_events(&tiny_config(tmp32.path(), 1)));
    assert!((losses[0] - f32_losses[0]).abs() < 0.05 * f32_losses[0]);
    assert_ne!(losses[0], f32_losses[0], "bfloat16 weights should round");

    // And the frozen weights were bfloat16 during training.
    let mut loaded = model::load(&config.model, &LoadOptions::default()).unwrap();
    lora::apply(&mut loaded.model, &config.lora).unwrap();
    loaded.model.cast_frozen_floats(Dtype::Bfloat16).unwrap();
    let params = loaded.model.parameters().flatten();
    for (key, value) in params {
        let adapter = key.ends_with("lora_a") || key.ends_with("lora_b");
        let expected = if adapter {
            Dtype::Float32
        } else {
            Dtype::Bfloat16
        };
        assert_eq!(value.dtype(), expected, "{key}");
    }
}

#[test]
fn our_kernels_follow_mlx_over_fifty_steps() {
    // The same run (same data order, seeds) with our CPU kernels and with
    // MLX's own ops: the loss curves agree to float32 rounding.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = tiny_config(tmp.path(), 50);
    // A learning rate where training is stable: at 1e-2 the tiny model's
    // loss jumps around and any rounding difference grows chaotically.
    config.learning_rate = 2e-3;
    finetune::kernels::set_enabled(true);
    let ours = step_losses(&train_events(&config));
    finetune::kernels::set_enabled(false);
    let theirs = step_losses(&train_events(&config));
    finetune::kernels::set_enabled(true);
    assert_eq!(ours.len(), 50);
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
        .fold(0.0f32, f32::max);
    eprintln!("largest relative difference over 50 steps: {worst:e}");
    assert!(worst < 1e-3, "loss curves differ by {worst}");
    assert!(ours[49] < ours[0] * 0.5);
}

#[test]
fn clipping_scales_the_step_to_the_max_norm() {
    // One plain-SGD step from B = 0: the update is -lr · gradient, so the
    // clipped run's adapters are the unclipped ones times max / norm.
    let run = |max_grad_norm: Option<f32>| {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = tiny_config(tmp.path(), 1);
        config.optimizer = OptimizerKind::Sgd;
        config.momentum = 0.0;
        config.learning_rate = 0.5;
        config.max_grad_norm = max_grad_norm;
        let events = train_events(&config);
        let norm = events
            .iter()
            .find_map(|e| match e {
                TrainEvent::Step { grad_norm, .. } => Some(*grad_norm),
                _ => None,
            })
            .expect("a step event");
        let saved =
            finetune::files::load_arrays(&config.output.join("adapters.safetensors")).unwrap();
        (norm, saved)
    };
    let (norm, free) = run(None);
    assert!(norm > 0.0);
    let max = norm / 4.0;
    let (clipped_norm, clipped) = run(Some(max));
    assert_eq!(
        norm, clipped_norm,
        "the event reports the norm before clipping"
    );
    let factor = max / (norm + 1e-6);
    let mut compared = 0;
    for (key, value) in &free {
        if !key.ends_with("lora_b") {
            continue;
        }
        let expected = value.multiply(Array::from_f32(factor)).unwrap();
        let scale: f32 = value.abs().unwrap().max(None).unwrap().item_exact();
        assert!(
            max_abs_diff(&expected, &clipped[key]) <= 1e-5 * scale.max(1e-12),
            "{key}"
        );
        compared += 1;
    }
    assert!(compared > 0);
    // A max above the norm leaves the step alone, bit for bit.
    let (_, unclipped) = run(Some(norm * 2.0));
    for (key, value) in &free {
        assert_eq!(max_abs_diff(value, &unclipped[key]), 0.0, "{key}");
    }
}

#[test]
fn gradient_checkpointing_computes_the_same_steps() {
    // Without dropout the recomputed activations are the forward pass's:
    // the same losses, gradient norms and adapters as the plain step.
    let run = |grad_checkpoint: bool, tmp: &Path| {
        let mut config = tiny_config(tmp, 6);
        config.grad_checkpoint = grad_checkpoint;
        let events = train_events(&config);
        let norms: Vec<f32> = events
            .iter()
            .filter_map(|e| match e {
                TrainEvent::Step { grad_norm, .. } => Some(*grad_norm),
                _ => None,
            })
            .collect();
        let saved =
            finetune::files::load_arrays(&config.output.join("adapters.safetensors")).unwrap();
        (step_losses(&events), norms, saved)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (losses, norms, adapters) = run(false, a.path());
    let (losses_gc, norms_gc, adapters_gc) = run(true, b.path());
    assert_eq!(losses.len(), 6);
    for (x, y) in losses
        .iter()
        .zip(&losses_gc)
        .chain(norms.iter().zip(&norms_gc))
    {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{x} vs {y}");
    }
    for (key, value) in &adapters {
        let scale: f32 = value.abs().unwrap().max(None).unwrap().item_exact();
        assert!(
            max_abs_diff(value, &adapters_gc[key]) <= 1e-5 * scale.max(1e-6),
            "{key}"
        );
    }
}

#[test]
fn gradient_checkpointing_with_dropout_trains_and_resumes_exactly() {
    // Dropout masks come from a seed per step and layer: the recomputation
    // and a resumed run draw the same ones.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = with_checkpoints(tmp.path(), 8);
    config.grad_checkpoint = true;
    config.lora.dropout = 0.1;
    let (straight, resumed) = straight_and_resumed(&config, 3);
    assert_eq!(straight, resumed);
    assert!(straight[7] < straight[0] * 0.9, "{straight:?}");
}

#[test]
fn a_compiled_step_follows_the_plain_one_and_resumes_exactly() {
    let losses = |compile: bool| {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = tiny_config(tmp.path(), 6);
        config.compile = Some(compile);
        step_losses(&train_events(&config))
    };
    let (plain, compiled) = (losses(false), losses(true));
    assert_eq!(plain.len(), 6);
    assert!((plain[0] - compiled[0]).abs() <= 1e-6 * plain[0].abs());
    for (x, y) in plain.iter().zip(&compiled) {
        // Fused element-wise work rounds differently (the first step's loss
        // within an ulp or two); this high learning rate amplifies it a little.
        assert!((x - y).abs() <= 1e-3 * x.abs(), "{plain:?} vs {compiled:?}");
    }
    assert!(compiled[5] < compiled[0], "{compiled:?}");

    let tmp = tempfile::tempdir().unwrap();
    let mut config = with_checkpoints(tmp.path(), 8);
    config.compile = Some(true);
    let (straight, resumed) = straight_and_resumed(&config, 3);
    assert_eq!(straight, resumed);
}
