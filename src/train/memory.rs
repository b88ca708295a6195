//! How much memory a training run will need, before it starts: the weights
//! as loaded, the adapters with their gradients and AdamW moments, and what
//! one step keeps alive for the backward pass — per token and layer, the
//! activations the projections, norms and attention save, and for the
//! whole batch the logits over the vocabulary and their gradient (with our
//! CPU kernels: no attention scores, and one block of logits at a time).
//! With gradient checkpointing, each layer's input and one layer's
//! activations.
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
    /// Saved activations of every layer for the widest batch (with
    /// checkpointing: the layers' inputs and one layer's activations).
    pub activations: u64,
    /// Logits over the vocabulary, their softmax and gradient.
    pub logits: u64,
    /// What the data keeps in memory while training: the examples' index,
    /// the batches' plan and one batch being read (the tokens stay on
    /// disk, see `data::examples`).
    #[serde(default)]
    pub data: u64,
    pub total: u64,
}

/// Shape of the step that decides the peak.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    /// Rows per batch.
    pub batch: usize,
    /// Padded length of the widest batch.
    pub width: usize,
    /// Gradient checkpointing: only each layer's input is kept, and one
    /// layer's activations at a time are rebuilt.
    pub recompute: bool,
}

/// Float32 values kept per token (and per layer, but the vocabulary term).
struct Factors {
    hidden: f64,
    intermediate: f64,
    /// Per position attended (the score matrices MLX's attention keeps).
    attention: f64,
    /// Per vocabulary entry (the whole logits, their softmax and gradient).
    vocab: f64,
}

// Fitted on SmolLM2-135M (30 layers, hidden 576, FFN 1536, 9 heads, vocab
// 49,152) at batch × length 2×128, 4×256, 1×512 and 8×64.
//
// With MLX's own ops: ~2.0 MiB per token plus ~1 KiB per token per position
// attended.
const MLX_OPS: Factors = Factors {
    hidden: 11.0,
    intermediate: 4.0,
    attention: 1.0,
    vocab: 3.0,
};
// With our CPU kernels (attention keeps no scores, the cross-entropy no
// logits): ~1.17 MB per token, and one block of logits at a time.
const OUR_KERNELS: Factors = Factors {
    hidden: 6.2,
    intermediate: 4.0,
    attention: 0.0,
    vocab: 0.0,
};
/// The cross-entropy kernel's block of logits (kernels/ft_kernels.cpp).
const LOGITS_BLOCK_BYTES: u64 = (1 << 23) * 4;

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
        let ours = crate::kernels::apply_to(model.head().weight.dtype());
        let f = if ours { &OUR_KERNELS } else { &MLX_OPS };
        let per_layer = f.hidden * dims.hidden as f64
            + f.intermediate * dims.intermediate as f64
            + f.attention * (dims.heads * shape.width) as f64;
        let activations = if shape.recompute {
            (tokens * (dims.hidden as f64 * dims.layers as f64 + per_layer) * 4.0) as u64
        } else {
            (tokens * per_layer * dims.layers as f64 * 4.0) as u64
        };
        let logits = if ours {
            LOGITS_BLOCK_BYTES
        } else {
            (tokens * f.vocab * dims.vocab as f64 * 4.0) as u64
        };
        Self {
            weights,
            adapters,
            activations,
            logits,
            data: 0,
            total: weights + adapters + activations + logits,
        }
    }

    /// The same, with `bytes` of resident data added.
    pub fn with_data(mut self, bytes: u64) -> Self {
        self.total = self.total - self.data + bytes;
        self.data = bytes;
        self
    }
}

/// Bytes the batching plan and one batch being built keep for `examples`
/// examples in `groups` batches of `rows` rows of at most `width` positions:
/// per example its index in a row, per row and batch a list; the batch's
/// four int32 / float32 arrays and the examples read for it.
pub fn plan_bytes(examples: usize, groups: usize, rows: usize, width: usize) -> u64 {
    let list = 3 * 8 + 16; // a Vec and its allocation's overhead
    let plan = examples * 8 + groups * rows * list + groups * (list + 8);
    let batch = rows * width * (4 * 4 + 5);
    (plan + batch) as u64
}

/// "1.23 GiB".
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}
