//! Model configuration as Hugging Face writes it in `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::gpt2::Gpt2Config;
use crate::error::{Error, Result};

/// Architectures the engine can run, by `model_type`.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["gpt2", "llama", "mistral", "qwen2"];

/// A parsed `config.json`, by architecture.
#[derive(Debug, Clone, PartialEq)]
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
        Ok(ModelConfig::Gpt2(config))
    } else {
        let mut config: LlamaConfig =
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
        config.fold_rope_parameters();
        config.validate().map_err(invalid)?;
        Ok(ModelConfig::Llama(config))
    }
}

/// The decoder-only Llama family: Llama, Mistral and Qwen2 share this shape
/// and differ in a few switches (attention biases, tied embeddings, RoPE).
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
    /// transformers ≥ 5 writes `rope_theta` and the scaling together here;
    /// folded into the two fields above on reading.
    #[serde(default, skip_serializing)]
    pub rope_parameters: Option<RopeScaling>,
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
    pub fn fold_rope_parameters(&mut self) {
        if let Some(mut p) = self.rope_parameters.take() {
            if let Some(theta) = p.rope_theta.take() {
                self.rope_theta = theta;
            }
            if p.rope_type != "default" {
                self.rope_scaling = Some(p);
            }
        }
    }

    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i32 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Whether q/k/v carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }

    /// Whether o_proj carries a bias.
    pub fn o_bias(&self) -> bool {
        self.model_type != "qwen2" && self.attention_bias
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
        ];
        if let Some((name, v)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(format!("{name} must be positive, got {v}"));
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
