//! Model configuration as Hugging Face writes it in `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::gpt2::Gpt2Config;
use crate::error::{Error, Result};

/// Architectures the engine can run, by `model_type`.
/// (`gemma3` is a multimodal checkpoint whose language model is read.)
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "gpt2",
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3_text",
    "gemma3",
    "phi3",
];

/// The most decoder layers a config may declare.
pub const MAX_LAYERS: i32 = 1 << 12;

/// A parsed `config.json`, by architecture.
#[derive(Debug, Clone, PartialEq)]
// One value per loaded model: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ModelConfig {
    Llama(LlamaConfig),
    Gpt2(Gpt2Config),
}

/// Reads and checks `config.json`.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: not valid JSON: {e}", path.display())))?;
    let value = language_model_config(value);
    let model_type = value
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("<missing>");
    if !SUPPORTED_MODEL_TYPES.contains(&model_type) {
        return Err(Error::Invalid(format!(
            "{}: model_type `{model_type}` is not supported; supported: {}",
            path.display(),
            SUPPORTED_MODEL_TYPES.join(", ")
        )));
    }
    let invalid = |e: String| Error::Invalid(format!("{}: {e}", path.display()));
    if model_type == "gpt2" {
        let config: Gpt2Config =
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        check_gpt2_bounds(&config).map_err(invalid)?;
        Ok(ModelConfig::Gpt2(config))
    } else {
        let mut config: LlamaConfig =
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        config.fold_rope_parameters().map_err(invalid)?;
        config.validate().map_err(invalid)?;
        Ok(ModelConfig::Llama(config))
    }
}

/// Upper bounds far above any real GPT-2, and the settings
/// `Gpt2Config::validate` leaves unchecked.
fn check_gpt2_bounds(c: &Gpt2Config) -> std::result::Result<(), String> {
    for (name, v, max) in [
        ("vocab_size", c.vocab_size, 1 << 24),
        ("n_positions", c.n_positions, 1 << 24),
        ("n_embd", c.n_embd, 1 << 17),
        ("n_layer", c.n_layer, MAX_LAYERS),
        ("n_head", c.n_head, 1 << 12),
    ] {
        if v > max {
            return Err(format!("{name}: expected at most {max}, got {v}"));
        }
    }
    if let Some(inner) = c.n_inner {
        if !(1..=1 << 20).contains(&inner) {
            return Err(format!("n_inner: expected 1 to {}, got {inner}", 1 << 20));
        }
    }
    if !(c.layer_norm_epsilon.is_finite() && c.layer_norm_epsilon > 0.0) {
        return Err(format!(
            "layer_norm_epsilon: expected a finite positive number, got {}",
            c.layer_norm_epsilon
        ));
    }
    Ok(())
}

/// A multimodal Gemma 3 checkpoint (`model_type: gemma3`) keeps its
/// language model's settings in `text_config`: the text model is what is
/// trained, so that is the config read.
fn language_model_config(value: serde_json::Value) -> serde_json::Value {
    let is_multimodal = value.get("model_type").and_then(|v| v.as_str()) == Some("gemma3");
    match value.get("text_config") {
        Some(text) if is_multimodal && text.is_object() => {
            let mut text = text.clone();
            text["model_type"] = "gemma3_text".into();
            for key in ["tie_word_embeddings", "bos_token_id", "eos_token_id"] {
                if text.get(key).is_none() {
                    if let Some(v) = value.get(key) {
                        text[key] = v.clone();
                    }
                }
            }
            text
        }
        _ => value,
    }
}

/// The decoder-only Llama family: Llama, Mistral, Qwen2/3 and Gemma 2/3
/// share this shape and differ in switches (attention biases, q/k norms,
/// sliding windows, Gemma's norms and soft-capping, RoPE per layer kind);
/// `super::architecture` says which model type sets which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub model_type: String,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_hidden_layers: i32,
    pub num_attention_heads: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i32>,
    pub vocab_size: i32,
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f32,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers ≥ 5 writes `rope_theta` and the scaling together here
    /// (Gemma 3: one entry per layer kind); folded into the fields above
    /// and `rope_local_base_freq` on reading.
    #[serde(default, skip_serializing)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Gemma 3: the RoPE base of the sliding-window layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_local_base_freq: Option<f32>,
    /// Keys a sliding-window layer attends to, itself included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<i32>,
    /// Qwen2/3: whether the window is used, and below which layer it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_sliding_window: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_window_layers: Option<i32>,
    /// Gemma 3 (transformers 4): every n-th layer is global.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window_pattern: Option<i32>,
    /// `sliding_attention` / `full_attention` per layer (transformers 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_types: Option<Vec<String>>,
    /// Gemma: attention scores scale by `query_pre_attn_scalar^-0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_pre_attn_scalar: Option<f32>,
    /// Gemma 2: `cap · tanh(x / cap)` on attention scores and on logits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_logit_softcapping: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_logit_softcapping: Option<f32>,
    /// Phi-3: the context LongRoPE's short factors cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<i32>,
    /// The share of each head's features RoPE turns (Phi-4-mini: 0.75).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f32>,
    /// The MLP's activation (`silu`, `gelu_pytorch_tanh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_act: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_activation: Option<String>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v/o (Llama's switch); Qwen2 always has q/k/v biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the MLP projections (Llama's switch).
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_position_embeddings: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
}

/// `rope_scaling` in config.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type", default = "default_rope_type")]
    pub rope_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_theta: Option<f32>,
    #[serde(default = "one")]
    pub factor: f32,
    #[serde(default)]
    pub low_freq_factor: Option<f32>,
    #[serde(default)]
    pub high_freq_factor: Option<f32>,
    #[serde(default)]
    pub original_max_position_embeddings: Option<i32>,
    /// LongRoPE (Phi-3): per-frequency stretch factors for sequences up to
    /// `original_max_position_embeddings` and beyond it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_factor: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_factor: Option<Vec<f32>>,
    /// LongRoPE's multiplier of the rotated features (derived when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_factor: Option<f32>,
    /// transformers 5 writes the share of rotated features here.
    #[serde(default, skip_serializing)]
    pub partial_rotary_factor: Option<f32>,
}

fn default_rope_type() -> String {
    "default".into()
}
fn default_rms_norm_eps() -> f32 {
    1e-6
}
fn default_rope_theta() -> f32 {
    10_000.0
}
fn one() -> f32 {
    1.0
}

impl LlamaConfig {
    /// Moves transformers 5's `rope_parameters` into `rope_theta` and
    /// `rope_scaling`, the form every version reads.
    pub fn fold_rope_parameters(&mut self) -> std::result::Result<(), String> {
        let Some(value) = self.rope_parameters.take() else {
            return Ok(());
        };
        let parse = |v: &serde_json::Value| -> std::result::Result<RopeScaling, String> {
            serde_json::from_value(v.clone()).map_err(|e| format!("rope_parameters: {e}"))
        };
        // Gemma 3 in transformers 5: one entry per layer kind.
        let (full, sliding) = match value.get("full_attention") {
            Some(full) => (
                parse(full)?,
                value.get("sliding_attention").map(parse).transpose()?,
            ),
            None => (parse(&value)?, None),
        };
        let mut full = full;
        if let Some(theta) = full.rope_theta.take() {
            self.rope_theta = theta;
        }
        if let Some(share) = full.partial_rotary_factor.take() {
            self.partial_rotary_factor.get_or_insert(share);
        }
        if full.rope_type != "default" {
            self.rope_scaling = Some(full);
        }
        if let Some(theta) = sliding.and_then(|s| s.rope_theta) {
            self.rope_local_base_freq = Some(theta);
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i32 {
        self.head_dim.unwrap_or_else(|| {
            self.hidden_size
                .checked_div(self.num_attention_heads)
                .unwrap_or(0)
        })
    }

    /// Whether q/k/v carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    /// Whether o_proj carries a bias.
    pub fn o_bias(&self) -> bool {
        self.model_type != "qwen2" && self.attention_bias
    }

    /// Whether this is a Gemma (2 or 3) model.
    pub fn is_gemma(&self) -> bool {
        self.model_type.starts_with("gemma")
    }

    /// The keys each layer attends to: `Some(window)` for a sliding-window
    /// layer, `None` for a global one. transformers 5 lists the kinds in
    /// `layer_types`; older configs give them by model type.
    pub fn layer_windows(&self) -> Vec<Option<i32>> {
        let n = self.num_hidden_layers.max(0) as usize;
        let Some(window) = self.sliding_window else {
            return vec![None; n];
        };
        if let Some(types) = &self.layer_types {
            return types
                .iter()
                .map(|t| (t == "sliding_attention").then_some(window))
                .collect();
        }
        (0..n)
            .map(|i| {
                let sliding = match self.model_type.as_str() {
                    "gemma2" => i % 2 == 0,
                    "gemma3_text" => {
                        let pattern = self.sliding_window_pattern.unwrap_or(6).max(1) as usize;
                        (i + 1) % pattern != 0
                    }
                    "qwen2" | "qwen3" => {
                        self.use_sliding_window == Some(true)
                            && i as i32 >= self.max_window_layers.unwrap_or(0)
                    }
                    _ => true,
                };
                sliding.then_some(window)
            })
            .collect()
    }

    /// How many features of each head RoPE turns.
    pub fn rotary_dims(&self) -> i32 {
        let share = self.partial_rotary_factor.unwrap_or(1.0);
        ((self.head_dim() as f32 * share) as i32).max(2) / 2 * 2
    }

    /// The MLP's activation as the config names it.
    pub fn activation(&self) -> Option<&str> {
        self.hidden_activation
            .as_deref()
            .or(self.hidden_act.as_deref())
    }

    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
        ];
        if let Some((name, v)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(format!("{name}: expected a positive number, got {v}"));
        }
        // Upper bounds far above any real model: sizes the loader allocates
        // by (layers, RoPE tables) must not be whatever the file says.
        let bounded = [
            ("hidden_size", self.hidden_size, 1 << 17),
            ("intermediate_size", self.intermediate_size, 1 << 20),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, 1 << 12),
            ("vocab_size", self.vocab_size, 1 << 24),
        ];
        if let Some((name, v, max)) = bounded.iter().find(|(_, v, max)| v > max) {
            return Err(format!("{name}: expected at most {max}, got {v}"));
        }
        if self.kv_heads() <= 0 {
            return Err(format!(
                "num_key_value_heads: expected a positive number, got {}",
                self.kv_heads()
            ));
        }
        if self.head_dim() <= 0 || self.head_dim() > 1 << 13 {
            return Err(format!(
                "head_dim: expected 1 to {} (hidden_size / num_attention_heads when absent), got {}",
                1 << 13,
                self.head_dim()
            ));
        }
        let finite_positive = [
            ("rms_norm_eps", Some(self.rms_norm_eps)),
            ("rope_theta", Some(self.rope_theta)),
            ("rope_local_base_freq", self.rope_local_base_freq),
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
        ];
        for (name, v) in finite_positive {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!(
                        "{name}: expected a finite positive number, got {v}"
                    ));
                }
            }
        }
        for (name, v) in [
            ("max_position_embeddings", self.max_position_embeddings),
            (
                "original_max_position_embeddings",
                self.original_max_position_embeddings,
            ),
        ] {
            if v.is_some_and(|v| v <= 0) {
                return Err(format!(
                    "{name}: expected a positive number, got {}",
                    v.unwrap_or(0)
                ));
            }
        }
        if let Some(scaling) = &self.rope_scaling {
            if !(scaling.factor.is_finite() && scaling.factor > 0.0) {
                return Err(format!(
                    "rope_scaling.factor: expected a finite positive number, got {}",
                    scaling.factor
                ));
            }
            for (name, v) in [
                ("low_freq_factor", scaling.low_freq_factor),
                ("high_freq_factor", scaling.high_freq_factor),
                ("attention_factor", scaling.attention_factor),
            ] {
                if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                    return Err(format!(
                        "rope_scaling.{name}: expected a finite positive number, got {}",
                        v.unwrap_or(0.0)
                    ));
                }
            }
            if scaling
                .original_max_position_embeddings
                .is_some_and(|v| v <= 0)
            {
                return Err(
                    "rope_scaling.original_max_position_embeddings: expected a positive number"
                        .into(),
                );
            }
            let half = (self.rotary_dims() / 2) as usize;
            for (name, factors) in [
                ("short_factor", &scaling.short_factor),
                ("long_factor", &scaling.long_factor),
            ] {
                if let Some(f) = factors {
                    if f.len() != half {
                        return Err(format!(
                            "rope_scaling.{name}: expected {half} factors (rotary dimensions / 2), got {}",
                            f.len()
                        ));
                    }
                    if let Some(x) = f.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
                        return Err(format!(
                            "rope_scaling.{name}: expected finite positive factors, got {x}"
                        ));
                    }
                }
            }
        }
        if let Some(share) = self.partial_rotary_factor {
            if !(share > 0.0 && share <= 1.0) {
                return Err(format!(
                    "partial_rotary_factor must be in (0, 1], got {share}"
                ));
            }
        }
        if self.sliding_window.is_some_and(|w| w <= 0) {
            return Err("sliding_window: expected a positive number".into());
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers as usize {
                return Err(format!(
                    "layer_types lists {} layers, num_hidden_layers is {}",
                    types.len(),
                    self.num_hidden_layers
                ));
            }
            if let Some(bad) = types
                .iter()
                .find(|t| !matches!(t.as_str(), "sliding_attention" | "full_attention"))
            {
                return Err(format!(
                    "layer_types: unknown kind `{bad}` (expected sliding_attention or full_attention)"
                ));
            }
        }
        if let Some(act) = self.activation() {
            if !matches!(act, "silu" | "gelu_pytorch_tanh" | "gelu_tanh") {
                return Err(format!(
                    "hidden activation `{act}` is not supported (supported: silu, gelu_pytorch_tanh)"
                ));
            }
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        Ok(())
    }
}
