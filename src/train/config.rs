//! Everything a training run needs, readable from YAML.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::optimizer::OptimizerKind;
use super::preference::Method;
use super::schedule::ScheduleKind;
use crate::data::{MaskPolicy, OnBadRecord, ReadOptions};
use crate::error::{Error, Result};
use crate::lora::LoraConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The profile the settings started from (chat, instruct, completion,
    /// code); this file's own settings override it.
    pub profile: Option<String>,
    /// A .gguf file, a Hugging Face model folder, or a hub id.
    pub model: PathBuf,
    /// Training data: a .jsonl / .json / .csv / .tsv / .parquet / .txt file,
    /// or a folder with train.* (and valid.*) files.
    pub data: PathBuf,
    /// Validation data (default: the folder's valid file, or valid.* beside
    /// a train.* file; else `valid_fraction` of the training data).
    pub valid: Option<PathBuf>,
    /// Fraction of the training records held out for validation when no
    /// validation file exists (0: none).
    pub valid_fraction: f64,
    /// Chat template: `model` (the model's own), a built-in name (chatml,
    /// alpaca, llama-2, llama-3, mistral, zephyr, vicuna, gemma, phi-3,
    /// raw) or a Jinja file.
    pub template: Option<String>,
    /// The file's column for each field the reader knows (e.g. `prompt:
    /// question`).
    pub columns: BTreeMap<String, String>,
    /// `error` (default) or `skip` records that cannot be read.
    pub on_bad_record: OnBadRecord,
    /// Where adapters are written.
    pub output: PathBuf,
    /// Where checkpoints for resuming are written (none when absent).
    pub checkpoint_dir: Option<PathBuf>,
    /// Checkpoint every N steps (and when stopped or finished).
    pub steps_per_checkpoint: usize,
    pub max_length: usize,
    /// Rows per batch; 0 picks the largest that fits in memory (auto).
    pub batch_size: usize,
    /// Batches whose gradients are summed before each optimizer step.
    pub grad_accumulation: usize,
    /// Pack several examples into each row of `max_length` tokens, attention
    /// kept inside each example (rotary-position models).
    pub packing: bool,
    /// Gradient checkpointing: keep only each layer's input from the forward
    /// pass and recompute the trained layers' activations in the backward
    /// pass (memory for about one more forward pass of time).
    pub grad_checkpoint: bool,
    /// Compile the forward and backward pass (MLX fuses element-wise ops;
    /// runs without LoRA dropout or checkpointing). Absent: on a GPU, where
    /// it paid (1.39x on an H100), off on the CPU, where it did not (~2 %,
    /// the step is matmul-bound there); see BENCHMARKS.md.
    pub compile: Option<bool>,
    /// Optimizer steps; when absent, `epochs` decides.
    pub iters: Option<usize>,
    pub epochs: f64,
    pub learning_rate: f32,
    pub warmup_steps: usize,
    pub schedule: ScheduleKind,
    /// `adamw` (default), `adam`, `sgd` or `adafactor`.
    pub optimizer: OptimizerKind,
    /// SGD's momentum (0: plain SGD).
    pub momentum: f32,
    /// The frozen base weights' type: `auto` (float32 on the CPU, bfloat16
    /// on a GPU), `float32`, `bfloat16` or `float16`. Adapters, fully
    /// trained weights and the optimizer state stay float32.
    pub precision: Precision,
    /// Clip the global gradient norm to this (none when absent).
    pub max_grad_norm: Option<f32>,
    pub weight_decay: f32,
    pub lora: LoraConfig,
    /// Keep a quantized base (GGUF Q4/Q8) quantized while training (QLoRA).
    /// Off by default: on the CPU, MLX's dense float32 kernels are far faster
    /// than its quantized ones.
    pub quantized_base: bool,
    /// QLoRA: quantize the base's decoder projections to this many bits (4
    /// or 8, groups of 64) and train adapters over them.
    pub qlora_bits: Option<i32>,
    /// Refuse to start when the memory estimate exceeds what is available.
    pub memory_guard: bool,
    /// Tokens to learn: `completions` (assistant turns and completions),
    /// `last_turn` (the last assistant turn only) or `all`.
    pub mask: MaskPolicy,
    /// Learn every token (same as `mask: all`).
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
    /// `sft` (default: learn the answers), a preference method over
    /// chosen / rejected pairs (`dpo`, `ipo` or `orpo`), or `grpo` over
    /// prompts and reward functions.
    pub method: Method,
    /// DPO's and IPO's β (how far the policy may move from the reference),
    /// ORPO's λ (the weight of the odds-ratio term).
    pub beta: f32,
    /// DPO: the assumed chance that a pair's preference is wrong (0: none).
    pub label_smoothing: f32,
    /// GRPO: completions sampled per prompt (the group each is compared
    /// with). `batch_size` counts prompts.
    pub group_size: usize,
    /// GRPO: the longest completion sampled, in tokens.
    pub max_completion_length: usize,
    /// GRPO: the sampling temperature of the completions.
    pub temperature: f32,
    /// GRPO: nucleus sampling's probability mass (1: off).
    pub top_p: f32,
    /// GRPO: the weight of the KL penalty that keeps the policy near the
    /// reference (the base, adapters off); 0 skips the reference pass.
    pub kl_coef: f32,
    /// GRPO: the reward functions, summed with their weights.
    pub rewards: Vec<super::rewards::RewardSpec>,
}

/// Mixed precision: what the frozen weights are kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Auto,
    Float32,
    Bfloat16,
    Float16,
}

impl Precision {
    pub const NAMES: [&'static str; 4] = ["auto", "float32", "bfloat16", "float16"];

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(Self::Auto),
            "float32" | "fp32" => Ok(Self::Float32),
            "bfloat16" | "bf16" => Ok(Self::Bfloat16),
            "float16" | "fp16" => Ok(Self::Float16),
            other => Err(Error::Invalid(format!(
                "precision `{other}` is not known (auto, float32, bfloat16, float16)"
            ))),
        }
    }

    /// The dtype for the base weights. `auto` picks float32 on the CPU,
    /// where MLX's matrix products (BLAS) and FineTune's kernels are
    /// float32 and half types run on slow generic loops, and bfloat16 on a
    /// GPU, where it halves memory and traffic.
    pub fn dtype(self, on_cpu: bool) -> mlx_rs::Dtype {
        match self {
            Self::Auto if on_cpu => mlx_rs::Dtype::Float32,
            Self::Auto => mlx_rs::Dtype::Bfloat16,
            Self::Float32 => mlx_rs::Dtype::Float32,
            Self::Bfloat16 => mlx_rs::Dtype::Bfloat16,
            Self::Float16 => mlx_rs::Dtype::Float16,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            profile: None,
            model: PathBuf::new(),
            data: PathBuf::new(),
            valid: None,
            valid_fraction: 0.0,
            template: None,
            columns: BTreeMap::new(),
            on_bad_record: OnBadRecord::Error,
            output: PathBuf::from("adapters"),
            checkpoint_dir: None,
            steps_per_checkpoint: 100,
            max_length: 512,
            batch_size: 4,
            grad_accumulation: 1,
            packing: false,
            grad_checkpoint: false,
            compile: None,
            iters: None,
            epochs: 1.0,
            learning_rate: 1e-4,
            warmup_steps: 0,
            schedule: ScheduleKind::Cosine,
            optimizer: OptimizerKind::Adamw,
            momentum: 0.9,
            precision: Precision::Auto,
            max_grad_norm: Some(1.0),
            weight_decay: 0.0,
            lora: LoraConfig::default(),
            quantized_base: false,
            qlora_bits: None,
            memory_guard: true,
            mask: MaskPolicy::Completions,
            train_on_prompt: false,
            seed: 0,
            steps_per_report: 10,
            steps_per_eval: 100,
            val_batches: 25,
            early_stopping_patience: None,
            method: Method::Sft,
            beta: 0.1,
            label_smoothing: 0.0,
            group_size: 4,
            max_completion_length: 128,
            temperature: 1.0,
            top_p: 1.0,
            kl_coef: 0.04,
            rewards: Vec::new(),
        }
    }
}

impl TrainConfig {
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            on_bad_record: self.on_bad_record,
            columns: self.columns.clone(),
        }
    }

    pub fn mask_policy(&self) -> MaskPolicy {
        if self.train_on_prompt {
            MaskPolicy::All
        } else {
            self.mask
        }
    }
}

/// Named starting points; a YAML config and then flags override them.
pub const PROFILES: &[(&str, &str)] = &[
    (
        "chat",
        "conversations: learn every assistant turn (rank 16, 3 epochs, 1,024 tokens)",
    ),
    (
        "instruct",
        "instruction → answer: learn the last assistant turn (rank 16, 3 epochs, 1,024 tokens)",
    ),
    (
        "completion",
        "plain text or prompt/completion: learn every token, packed rows (rank 8, 1 epoch, 512 tokens)",
    ),
    (
        "code",
        "code: long examples, a larger adapter (rank 32, 2 epochs, 2,048 tokens)",
    ),
];

/// A profile's settings, as the YAML a user could have written.
fn profile_yaml(name: &str) -> Result<&'static str> {
    Ok(match name {
        "chat" => "mask: completions\nmax_length: 1024\nepochs: 3\nlearning_rate: 1.0e-4\nwarmup_steps: 20\nlora: {rank: 16, alpha: 32}\n",
        "instruct" => "mask: last_turn\nmax_length: 1024\nepochs: 3\nlearning_rate: 2.0e-4\nwarmup_steps: 20\nlora: {rank: 16, alpha: 32}\n",
        "completion" => "mask: all\nmax_length: 512\nepochs: 1\npacking: true\nlearning_rate: 1.0e-4\nlora: {rank: 8, alpha: 16}\n",
        "code" => "mask: completions\nmax_length: 2048\nepochs: 2\nlearning_rate: 1.0e-4\nwarmup_steps: 50\nlora: {rank: 32, alpha: 64}\n",
        other => {
            return Err(Error::Invalid(format!(
                "unknown profile `{other}`; choose from {}",
                PROFILES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )))
        }
    })
}

/// `a` with every key of `b` laid over it (mappings merge key by key).
fn overlay(a: &mut serde_yaml::Value, b: serde_yaml::Value) {
    match (a, b) {
        (serde_yaml::Value::Mapping(a), serde_yaml::Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) => overlay(slot, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, b) => *slot = b,
    }
}

/// The configuration from `base` defaults, a profile, and a YAML file, each
/// overriding the one before. YAML mistakes are reported with the file,
/// line and column.
pub fn resolve_config(
    base: TrainConfig,
    profile: Option<&str>,
    yaml: Option<&Path>,
) -> Result<TrainConfig> {
    let mut value = serde_yaml::to_value(&base).expect("serializable");
    let mut user = None;
    if let Some(path) = yaml {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        // Parsed on its own first, so errors carry a line and column.
        let located = |e: serde_yaml::Error| match e.location() {
            Some(l) => Error::Invalid(format!(
                "{}:{}:{}: {e}",
                path.display(),
                l.line(),
                l.column()
            )),
            None => Error::Invalid(format!("{}: {e}", path.display())),
        };
        let parsed: TrainConfig = serde_yaml::from_str(&text).map_err(located)?;
        let raw: serde_yaml::Value = serde_yaml::from_str(&text).map_err(located)?;
        user = Some((parsed, raw));
    }
    let profile = profile
        .map(str::to_string)
        .or_else(|| user.as_ref().and_then(|(c, _)| c.profile.clone()));
    if let Some(name) = &profile {
        let p: serde_yaml::Value =
            serde_yaml::from_str(profile_yaml(name)?).expect("valid profile");
        overlay(&mut value, p);
    }
    if let Some((_, raw)) = user {
        if !raw.is_null() {
            overlay(&mut value, raw);
        }
    }
    let mut config: TrainConfig = serde_yaml::from_value(value)
        .map_err(|e| Error::Invalid(format!("the combined configuration is invalid: {e}")))?;
    config.profile = profile;
    Ok(config)
}
