//! How much memory a training run will need, before it starts: the weights
//! as loaded, the adapters with their gradients and AdamW moments, and what
//! one step keeps alive for the backward pass — per token and layer, the
//! activations the projections, norms and attention save, and for the
//! whole batch the logits over the vocabulary and their gradient.
//!
//! The per-token factors were fitted to MLX's measured peak on the CPU
//! (float32) and are checked against it by tests on other configurations
//! (see BENCHMARKS.md); they describe MLX's lazy graph, not a theory.

use mlx_rs::module::ModuleParameters;
use serde::{Deserialize, Serialize};

use crate::model::Model;

/// Bytes, by what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    pub weights: u64,
    /// Adapter parameters, their gradients and two AdamW moments.
    pub adapters: u64,
    /// Saved activations of every layer for the widest batch.
    pub activations: u64,
    /// Logits over the vocabulary, their softmax and gradient.
    pub logits: u64,
    pub total: u64,
}

/// Shape of the step that decides the peak.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    /// Rows per batch.
    pub batch: usize,
    /// Padded length of the widest batch.
    pub width: usize,
}

// Fitted factors (float32 values kept per token): see the module comment.
// Fitted on SmolLM2-135M (30 layers, hidden 576, FFN 1536, 9 heads, vocab
// 49,152) at batch × length 2×128, 4×256, 1×512 and 8×64: ~2.0 MiB per token
// plus ~1 KiB per token per position attended.
const PER_TOKEN_HIDDEN: f64 = 11.0;
const PER_TOKEN_INTERMEDIATE: f64 = 4.0;
const PER_TOKEN_ATTENTION: f64 = 1.0;
const PER_TOKEN_VOCAB: f64 = 3.0;

impl MemoryEstimate {
    pub fn of(model: &Model, trainable: usize, shape: StepShape) -> Self {
        let weights: u64 = model
            .parameters()
            .flatten()
            .iter()
            .filter(|(k, _)| {
                !k.ends_with(".lora_a") && !k.ends_with(".lora_b") && !k.ends_with(".m")
            })
            .map(|(_, a)| a.nbytes() as u64)
            .sum();
        let adapters = trainable as u64 * 4 * 4;
        let tokens = (shape.batch * shape.width) as f64;
        let dims = model.dims();
        let per_layer = PER_TOKEN_HIDDEN * dims.hidden as f64
            + PER_TOKEN_INTERMEDIATE * dims.intermediate as f64
            + PER_TOKEN_ATTENTION * (dims.heads * shape.width) as f64;
        let activations = (tokens * per_layer * dims.layers as f64 * 4.0) as u64;
        let logits = (tokens * PER_TOKEN_VOCAB * dims.vocab as f64 * 4.0) as u64;
        Self {
            weights,
            adapters,
            activations,
            logits,
            total: weights + adapters + activations + logits,
        }
    }
}

/// "1.23 GiB".
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}
