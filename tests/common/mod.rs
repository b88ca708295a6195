//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

#[allow(unused_imports)]
pub use finetune::fixtures::{write_chat_data, write_tokenizer, TinyModel};
use finetune::mlx_rs::Array;

/// The default model `make setup` fetched (tests that need it fail with a
/// pointer to setup when it is missing).
pub fn default_model() -> PathBuf {
    let path = finetune::paths::default_model();
    assert!(
        path.exists(),
        "{} is missing: run `make setup` first",
        path.display()
    );
    path
}

pub fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    a.subtract(b)
        .unwrap()
        .abs()
        .unwrap()
        .max(None)
        .unwrap()
        .item_exact()
}

/// A few seconds of training: the tiny random model and 8 chat records
/// written under `tmp`, batches of 4, a high learning rate.
pub fn tiny_config(tmp: &std::path::Path, iters: usize) -> finetune::train::TrainConfig {
    finetune::train::TrainConfig {
        model: TinyModel::default().write(tmp),
        data: write_chat_data(tmp, 8),
        output: tmp.join("adapters"),
        iters: Some(iters),
        batch_size: 4,
        learning_rate: 1e-2,
        max_length: 64,
        steps_per_report: 1,
        seed: 3,
        ..Default::default()
    }
}

/// Trains on this thread; every event in order.
pub fn train_events(config: &finetune::train::TrainConfig) -> Vec<finetune::train::TrainEvent> {
    let mut events = Vec::new();
    let mut observer = |e: &finetune::train::TrainEvent| events.push(e.clone());
    finetune::train::train(config, &mut observer, &Default::default()).unwrap();
    events
}

/// The loss of each step report.
pub fn step_losses(events: &[finetune::train::TrainEvent]) -> Vec<f32> {
    events
        .iter()
        .filter_map(|e| match e {
            finetune::train::TrainEvent::Step { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect()
}

/// LoRA (rank 4, alpha 8) on every projection of `model`, with each B set
/// to random values (std 0.05) so the adapters change the output.
pub fn apply_random_lora(model: &mut finetune::model::Model) -> finetune::lora::LoraConfig {
    let config = finetune::lora::LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: model.lora_targets().iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    };
    finetune::lora::apply(model, &config).unwrap();
    for p in model.projections_mut() {
        if let Some(b) = p.lora_b.value.as_mut() {
            *b =
                finetune::mlx_rs::random::normal::<f32>(b.shape(), None, Some(0.05), None).unwrap();
        }
    }
    config
}
