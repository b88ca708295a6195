//! Everything a training run needs, readable from YAML.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::schedule::ScheduleKind;
use crate::data::MaskPolicy;
use crate::lora::LoraConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// A .gguf file or a Hugging Face model folder.
    pub model: PathBuf,
    /// Training data: a .jsonl file or a folder with train.jsonl / valid.jsonl.
    pub data: PathBuf,
    /// Validation data (default: valid.jsonl beside train.jsonl, if present).
    pub valid: Option<PathBuf>,
    /// Where adapters are written.
    pub output: PathBuf,
    /// Where checkpoints for resuming are written (none when absent).
    pub checkpoint_dir: Option<PathBuf>,
    /// Checkpoint every N steps (and when stopped or finished).
    pub steps_per_checkpoint: usize,
    pub max_length: usize,
    pub batch_size: usize,
    /// Optimizer steps; when absent, `epochs` decides.
    pub iters: Option<usize>,
    pub epochs: f64,
    pub learning_rate: f32,
    pub warmup_steps: usize,
    pub schedule: ScheduleKind,
    /// Clip the global gradient norm to this (none when absent).
    pub max_grad_norm: Option<f32>,
    pub weight_decay: f32,
    pub lora: LoraConfig,
    /// Keep a quantized base (GGUF Q4/Q8) quantized while training (QLoRA).
    /// Off by default: on the CPU, MLX's dense float32 kernels are far faster
    /// than its quantized ones.
    pub quantized_base: bool,
    #[serde(skip)]
    pub mask: MaskPolicy,
    /// Learn every token instead of the assistant's / completion's only.
    pub train_on_prompt: bool,
    pub seed: u64,
    pub steps_per_report: usize,
    /// Validate every N steps (0: only at the end).
    pub steps_per_eval: usize,
    /// Validation batches per evaluation (0: the whole validation set).
    pub val_batches: usize,
    /// Stop when the validation loss has not improved for this many
    /// evaluations (the best adapters are always kept in `output/best`).
    pub early_stopping_patience: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            data: PathBuf::new(),
            valid: None,
            output: PathBuf::from("adapters"),
            checkpoint_dir: None,
            steps_per_checkpoint: 100,
            max_length: 512,
            batch_size: 4,
            iters: None,
            epochs: 1.0,
            learning_rate: 1e-4,
            warmup_steps: 0,
            schedule: ScheduleKind::Cosine,
            max_grad_norm: Some(1.0),
            weight_decay: 0.0,
            lora: LoraConfig::default(),
            quantized_base: false,
            mask: MaskPolicy::Completions,
            train_on_prompt: false,
            seed: 0,
            steps_per_report: 10,
            steps_per_eval: 100,
            val_batches: 25,
            early_stopping_patience: None,
        }
    }
}

impl TrainConfig {
    pub fn mask_policy(&self) -> MaskPolicy {
        if self.train_on_prompt {
            MaskPolicy::All
        } else {
            self.mask
        }
    }
}
