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
use crate::model::{gpt2, llama, Model};

/// Whether a projection named `key` inside a layer (`self_attn.q_proj`) is
/// among `targets`: given in full, by its last part (`q_proj`), or all of
/// them when `targets` is empty.
pub fn selects(targets: &[String], key: &str) -> bool {
    targets.is_empty()
        || targets
            .iter()
            .any(|t| t == key || key.rsplit('.').next() == Some(t.as_str()))
}

/// Where and how big the adapters are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: i32,
    pub alpha: f32,
    pub dropout: f32,
    /// Projection names, in full (`self_attn.q_proj`) or by their last
    /// part (`q_proj`); empty means every attention and MLP projection.
    pub targets: Vec<String>,
    /// Adapt only the last N layers (all when absent).
    pub num_layers: Option<usize>,
    /// DoRA: learn a magnitude per output feature besides the low-rank
    /// direction update (weight-decomposed LoRA).
    pub dora: bool,
    /// Full fine-tuning: train the target projections' own weights (and
    /// biases) in the last `num_layers` layers instead of adapters; rank,
    /// alpha and dropout do not apply.
    pub full: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: Vec::new(),
            num_layers: None,
            dora: false,
            full: false,
        }
    }
}

impl LoraConfig {
    /// mlx-lm's name for the kind: `lora`, `dora` or `full`.
    pub fn fine_tune_type(&self) -> &'static str {
        if self.full {
            "full"
        } else if self.dora {
            "dora"
        } else {
            "lora"
        }
    }

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
        if self.full && self.dora {
            return Err(Error::Invalid(
                "full fine-tuning and DoRA exclude each other: pick one".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Invalid(format!(
                "lora dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        let mut known: Vec<&str> = Vec::new();
        for &t in llama::TARGETS
            .iter()
            .chain(llama::FUSED_TARGETS)
            .chain(gpt2::TARGETS)
        {
            if !known.contains(&t) {
                known.push(t);
            }
        }
        if let Some(bad) = self
            .targets
            .iter()
            .find(|t| !known.iter().any(|k| selects(std::slice::from_ref(t), k)))
        {
            return Err(Error::Invalid(format!(
                "unknown LoRA target `{bad}`; choose from {}",
                known.join(", ")
            )));
        }
        Ok(())
    }
}

/// Freezes the model and attaches trainable adapters; returns how many
/// parameters are trainable.
pub fn apply(model: &mut Model, config: &LoraConfig) -> Result<usize> {
    config.validate()?;
    let available = model.lora_targets();
    if let Some(bad) = config.targets.iter().find(|t| {
        !available
            .iter()
            .any(|k| selects(std::slice::from_ref(t), k))
    }) {
        return Err(Error::Invalid(format!(
            "LoRA target `{bad}` is not in this {} model; it has {}",
            model.model_type(),
            available.join(", ")
        )));
    }
    model.freeze_parameters(true);
    let layers = model.num_layers();
    let first = layers - config.num_layers.unwrap_or(layers).min(layers);
    for layer in model.layer_projections_mut().into_iter().skip(first) {
        for (key, projection) in layer {
            if selects(&config.targets, key) && config.full {
                if projection.quantization.is_some() {
                    return Err(Error::Invalid(
                        "full fine-tuning needs a float base model: drop qlora_bits / quantized_base".into(),
                    ));
                }
                projection.weight.unfreeze(false);
                projection.bias.unfreeze(false);
            } else if selects(&config.targets, key) {
                projection.add_lora(config.rank, config.scale())?;
                projection.lora_dropout = config.dropout;
                projection.lora_a.unfreeze(false);
                projection.lora_b.unfreeze(false);
                if config.dora {
                    projection.add_dora()?;
                    projection.m.unfreeze(false);
                }
            }
        }
    }
    Ok(trainable_count(model))
}

/// Number of trainable scalars.
pub fn trainable_count(model: &Model) -> usize {
    model
        .trainable_parameters()
        .flatten()
        .values()
        .map(|a| a.size())
        .sum()
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
pub fn save_mlx_adapters(model: &Model, config: &LoraConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.into(),
        source,
    })?;
    save_arrays_atomic(&adapter_weights(model), &dir.join("adapters.safetensors"))?;

    let layers = model.num_layers();
    let keys = model
        .lora_targets()
        .iter()
        .filter(|k| selects(&config.targets, k))
        .map(|k| k.to_string())
        .collect();
    let adapter_config = AdapterConfig {
        fine_tune_type: config.fine_tune_type().into(),
        num_layers: config.num_layers.unwrap_or(layers).min(layers),
        lora_parameters: LoraParameters {
            rank: config.rank,
            scale: config.scale(),
            dropout: config.dropout,
            keys,
            alpha: Some(config.alpha),
        },
    };
    let json = serde_json::to_string_pretty(&adapter_config).expect("serializable");
    write_atomic(&dir.join("adapter_config.json"), json.as_bytes())
}

/// Attaches the adapters in `dir` to `model`, in mlx-lm's or PEFT's format.
pub fn load_adapters(model: &mut Model, dir: &Path) -> Result<LoraConfig> {
    if dir.join("adapter_model.safetensors").exists() {
        // A folder of this call's own (removed when dropped): two loads at
        // once, in one process or two, never share one.
        let scratch = tempfile::Builder::new()
            .prefix("finetune-peft-")
            .tempdir()
            .map_err(|source| Error::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let converted = scratch.path().join("mlx");
        crate::peft::peft_to_mlx(dir, &converted)?;
        return load_mlx_adapters(model, &converted);
    }
    load_mlx_adapters(model, dir)
}

/// Attaches the adapters saved in `dir` (mlx-lm's format) to `model`.
pub fn load_mlx_adapters(model: &mut Model, dir: &Path) -> Result<LoraConfig> {
    let config_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
        path: config_path.clone(),
        source,
    })?;
    let saved: AdapterConfig = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: {e}", config_path.display())))?;
    if !["lora", "dora", "full"].contains(&saved.fine_tune_type.as_str()) {
        return Err(Error::Invalid(format!(
            "{}: fine_tune_type `{}` is not supported (lora, dora or full)",
            config_path.display(),
            saved.fine_tune_type
        )));
    }
    let p = &saved.lora_parameters;
    let targets = p.keys.clone();
    let config = LoraConfig {
        rank: p.rank,
        // alpha is what FineTune records; mlx-lm's own files only have scale.
        alpha: p.alpha.unwrap_or(p.scale * p.rank as f32),
        dropout: 0.0,
        targets,
        num_layers: Some(saved.num_layers),
        dora: saved.fine_tune_type == "dora",
        full: saved.fine_tune_type == "full",
    };
    apply(model, &config)?;
    let weights_path = dir.join("adapters.safetensors");
    set_adapter_weights(model, load_arrays(&weights_path)?, &weights_path)?;
    Ok(config)
}

/// The adapter tensors by parameter name (the model's trainable ones).
pub fn adapter_weights(model: &Model) -> HashMap<String, Array> {
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
    model: &mut Model,
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
