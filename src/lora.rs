//! Low-rank adapters: which layers get one, and the mlx-lm adapter format.
//!
//! `alpha` follows PEFT: the adapter's output is scaled by `alpha / rank`
//! (mlx-lm instead takes that product directly as `scale`; FineTune writes
//! both so either tool reads the same number).

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::module::{ModuleParameters, Parameter};
use mlx_rs::Array;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{load_arrays, save_arrays_atomic, write_atomic};
use crate::model::llama::Llama;

/// The projections adapters can target.
pub const ALL_TARGETS: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Where and how big the adapters are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: i32,
    pub alpha: f32,
    pub dropout: f32,
    /// Projection names (default: every attention and MLP projection).
    pub targets: Vec<String>,
    /// Adapt only the last N layers (all when absent).
    pub num_layers: Option<usize>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: ALL_TARGETS.iter().map(|s| s.to_string()).collect(),
            num_layers: None,
        }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank <= 0 {
            return Err(Error::Invalid(format!(
                "lora rank must be positive, got {}",
                self.rank
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Invalid(format!(
                "lora dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if let Some(bad) = self
            .targets
            .iter()
            .find(|t| !ALL_TARGETS.contains(&t.as_str()))
        {
            return Err(Error::Invalid(format!(
                "unknown LoRA target `{bad}`; choose from {}",
                ALL_TARGETS.join(", ")
            )));
        }
        Ok(())
    }
}

/// Freezes the model and attaches trainable adapters; returns how many
/// parameters are trainable.
pub fn apply(model: &mut Llama, config: &LoraConfig) -> Result<usize> {
    config.validate()?;
    model.freeze_parameters(true);
    let layers = model.model.layers.len();
    let first = layers - config.num_layers.unwrap_or(layers).min(layers);
    for layer in &mut model.model.layers[first..] {
        let attn = &mut layer.self_attn;
        let mlp = &mut layer.mlp;
        for (name, projection) in [
            ("q_proj", &mut attn.q_proj),
            ("k_proj", &mut attn.k_proj),
            ("v_proj", &mut attn.v_proj),
            ("o_proj", &mut attn.o_proj),
            ("gate_proj", &mut mlp.gate_proj),
            ("up_proj", &mut mlp.up_proj),
            ("down_proj", &mut mlp.down_proj),
        ] {
            if config.targets.iter().any(|t| t == name) {
                projection.add_lora(config.rank, config.scale())?;
                projection.lora_a.unfreeze(false);
                projection.lora_b.unfreeze(false);
            }
        }
    }
    Ok(trainable_count(model))
}

/// Number of trainable scalars.
pub fn trainable_count(model: &Llama) -> usize {
    model
        .trainable_parameters()
        .flatten()
        .values()
        .map(|a| a.size())
        .sum()
}

/// Number of scalars in the base model, quantized weights counted as the
/// dense matrices they stand for (adapters excluded).
pub fn total_count(model: &Llama) -> usize {
    let norms: usize = model
        .model
        .layers
        .iter()
        .map(|l| l.input_layernorm.weight.size() + l.post_attention_layernorm.weight.size())
        .sum::<usize>()
        + model.model.norm.weight.size();
    let projections: usize = model
        .projections()
        .chain(std::iter::once(&model.model.embed_tokens))
        .chain(model.lm_head.as_ref())
        .map(|p| {
            let bias = p.bias.value.as_ref().map_or(0, |b| b.size());
            (p.output_dims() * p.input_dims()) as usize + bias
        })
        .sum();
    norms + projections
}

/// mlx-lm's `adapter_config.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub fine_tune_type: String,
    pub num_layers: usize,
    pub lora_parameters: LoraParameters,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LoraParameters {
    pub rank: i32,
    pub scale: f32,
    pub dropout: f32,
    pub keys: Vec<String>,
    /// FineTune's own record of alpha (mlx-lm ignores it).
    #[serde(default)]
    pub alpha: Option<f32>,
}

/// Writes `adapters.safetensors` + `adapter_config.json` (mlx-lm's format)
/// into `dir`, each through a temporary file and a rename.
pub fn save_mlx_adapters(model: &Llama, config: &LoraConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.into(),
        source,
    })?;
    save_arrays_atomic(&adapter_weights(model), &dir.join("adapters.safetensors"))?;

    let layers = model.model.layers.len();
    let adapter_config = AdapterConfig {
        fine_tune_type: "lora".into(),
        num_layers: config.num_layers.unwrap_or(layers).min(layers),
        lora_parameters: LoraParameters {
            rank: config.rank,
            scale: config.scale(),
            dropout: config.dropout,
            keys: config.targets.iter().map(|t| qualified_key(t)).collect(),
            alpha: Some(config.alpha),
        },
    };
    let json = serde_json::to_string_pretty(&adapter_config).expect("serializable");
    write_atomic(&dir.join("adapter_config.json"), json.as_bytes())
}

/// Attaches the adapters in `dir` to `model`, in mlx-lm's or PEFT's format.
pub fn load_adapters(model: &mut Llama, dir: &Path) -> Result<LoraConfig> {
    if dir.join("adapter_model.safetensors").exists() {
        let converted = std::env::temp_dir().join(format!("finetune-peft-{}", std::process::id()));
        crate::peft::peft_to_mlx(dir, &converted)?;
        let result = load_mlx_adapters(model, &converted);
        let _ = std::fs::remove_dir_all(&converted);
        return result;
    }
    load_mlx_adapters(model, dir)
}

/// Attaches the adapters saved in `dir` (mlx-lm's format) to `model`.
pub fn load_mlx_adapters(model: &mut Llama, dir: &Path) -> Result<LoraConfig> {
    let config_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
        path: config_path.clone(),
        source,
    })?;
    let saved: AdapterConfig = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: {e}", config_path.display())))?;
    if saved.fine_tune_type != "lora" {
        return Err(Error::Invalid(format!(
            "{}: fine_tune_type `{}` is not supported (only lora)",
            config_path.display(),
            saved.fine_tune_type
        )));
    }
    let p = &saved.lora_parameters;
    let targets: Vec<String> = p
        .keys
        .iter()
        .map(|k| k.rsplit('.').next().unwrap_or(k).to_string())
        .collect();
    let config = LoraConfig {
        rank: p.rank,
        // alpha is what FineTune records; mlx-lm's own files only have scale.
        alpha: p.alpha.unwrap_or(p.scale * p.rank as f32),
        dropout: 0.0,
        targets,
        num_layers: Some(saved.num_layers),
    };
    apply(model, &config)?;
    let weights_path = dir.join("adapters.safetensors");
    set_adapter_weights(model, load_arrays(&weights_path)?, &weights_path)?;
    Ok(config)
}

/// The adapter tensors by parameter name (the model's trainable ones).
pub fn adapter_weights(model: &Llama) -> HashMap<String, Array> {
    model
        .trainable_parameters()
        .flatten()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Puts saved adapter tensors (read from `source`) into the model's adapter
/// parameters, checking every name and shape.
pub fn set_adapter_weights(
    model: &mut Llama,
    weights: HashMap<String, Array>,
    source: &Path,
) -> Result<()> {
    let mut params = model.parameters_mut().flatten();
    for (key, value) in weights {
        let slot = params.get_mut(key.as_str()).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: `{key}` does not match this model (wrong base model or adapter settings?)",
                source.display()
            ))
        })?;
        if slot.shape() != value.shape() {
            return Err(Error::Invalid(format!(
                "{}: `{key}` has shape {:?}, the model expects {:?}",
                source.display(),
                value.shape(),
                slot.shape()
            )));
        }
        **slot = value;
    }
    Ok(())
}

/// mlx-lm names keys by their path inside a layer.
fn qualified_key(target: &str) -> String {
    match target {
        "q_proj" | "k_proj" | "v_proj" | "o_proj" => format!("self_attn.{target}"),
        _ => format!("mlp.{target}"),
    }
}
