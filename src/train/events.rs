//! The one event type the trainer emits; the CLI renders it, the app
//! forwards it to the window, `events.jsonl` records it.

use serde::{Deserialize, Serialize};

use super::trainer::TrainSummary;

/// Something that happened during training. Every number is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    Started {
        total_steps: usize,
        steps_per_epoch: usize,
        train_examples: usize,
        valid_examples: usize,
        trainable_parameters: usize,
        total_parameters: usize,
        /// The checkpoint's step when this continues an earlier run.
        #[serde(default)]
        resumed_from_step: Option<usize>,
        /// What the user should know about the data: template tokens the
        /// tokenizer lacks, skipped records, how validation data was made.
        #[serde(default)]
        warnings: Vec<String>,
        /// What the run is expected to need at its peak (checked against
        /// the memory available before the first step).
        #[serde(default)]
        memory_estimate: Option<super::memory::MemoryEstimate>,
        /// What the run learns from (`train_examples` and `valid_examples`
        /// count pairs for a preference method).
        #[serde(default)]
        method: super::preference::Method,
    },
    Step {
        step: usize,
        epoch: f64,
        loss: f32,
        learning_rate: f32,
        grad_norm: f32,
        /// Tokens the loss was computed on, since the start.
        trained_tokens: usize,
        tokens_per_second: f64,
        elapsed_seconds: f64,
        eta_seconds: f64,
        mlx_active_bytes: usize,
        mlx_peak_bytes: usize,
        system_available_bytes: u64,
        /// Preference runs (DPO, IPO, ORPO): the pairs' figures over the
        /// steps since the last report.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preference: Option<PreferenceMetrics>,
        /// GRPO runs: the sampled completions' figures since the last report.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grpo: Option<GrpoMetrics>,
    },
    Eval {
        step: usize,
        /// GRPO: the held-out prompts' mean reward, negated (lower is
        /// better, as for a loss), of greedy completions.
        val_loss: f32,
        best: bool,
        /// Preference runs: the held-out pairs' figures.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preference: Option<PreferenceMetrics>,
        /// GRPO runs: the held-out prompts' greedy completions' figures.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grpo: Option<GrpoMetrics>,
    },
    Checkpoint {
        step: usize,
        path: String,
    },
    Finished {
        summary: TrainSummary,
    },
    Stopped {
        step: usize,
        reason: String,
    },
    Failed {
        error: String,
    },
    /// A run spread over several processes: where each rank stands (sent
    /// by the launcher whenever one changes).
    Hosts {
        hosts: Vec<crate::distributed::launch::HostStatus>,
    },
}

/// What a preference run measures over a set of pairs: the mean rewards of
/// the chosen and the rejected answers (β × policy-minus-reference
/// log-probability; ORPO: β × the average log-probability), their mean
/// margin, and the fraction of pairs whose chosen reward is the higher.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PreferenceMetrics {
    pub chosen_reward: f32,
    pub rejected_reward: f32,
    pub margin: f32,
    pub accuracy: f32,
    pub pairs: usize,
}

/// What a GRPO run measures over its sampled completions: the reward's
/// mean and standard deviation, each reward function's mean (in the
/// configured order), the mean per-token KL from the reference, the mean
/// completion length in tokens, the fraction cut off at the length limit,
/// and the share of the time spent sampling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoMetrics {
    pub reward_mean: f32,
    pub reward_std: f32,
    pub rewards: Vec<(String, f32)>,
    /// None when not measured (greedy validation, or `kl_coef: 0`).
    pub kl: Option<f32>,
    pub completion_length: f32,
    pub clipped_fraction: f32,
    pub completions: usize,
    /// Seconds spent sampling completions (of `elapsed_seconds`).
    pub generation_seconds: f64,
}

/// Receives events; called on the training thread, so keep it quick.
pub trait Observer {
    fn on_event(&mut self, event: &TrainEvent);
}

impl<F: FnMut(&TrainEvent)> Observer for F {
    fn on_event(&mut self, event: &TrainEvent) {
        self(event)
    }
}
