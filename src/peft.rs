//! Hugging Face PEFT's LoRA format, converted to and from mlx-lm's.
//!
//! PEFT: `adapter_model.safetensors` with keys
//! `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` of shape
//! (r, in) and `…lora_B.weight` of shape (out, r), and an
//! `adapter_config.json` with `r`, `lora_alpha`, `target_modules`.
//! mlx-lm: `adapters.safetensors` with `model.layers.N.….lora_a` (in, r) and
//! `lora_b` (r, out). The scale is `lora_alpha / r` in both.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};
use crate::files::{load_arrays as load, save_arrays_atomic as save, write_atomic};
use crate::lora::{AdapterConfig, LoraParameters};

const PEFT_PREFIX: &str = "base_model.model.";

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// The decoder layer a key belongs to and the key's part inside it:
/// `model.layers.3.self_attn.q_proj` → (3, `self_attn.q_proj`); GPT-2
/// numbers its blocks `transformer.h.3.…`.
fn split_layer(key: &str) -> Option<(usize, &str)> {
    let parts: Vec<&str> = key.split('.').collect();
    parts.windows(2).enumerate().find_map(|(i, w)| {
        let layer = w[1]
            .parse()
            .ok()
            .filter(|_| w[0] == "layers" || w[0] == "h")?;
        let skip: usize = parts[..i + 2].iter().map(|p| p.len() + 1).sum();
        Some((layer, key.get(skip..)?))
    })
}

fn layer_of(key: &str) -> Option<usize> {
    split_layer(key).map(|(layer, _)| layer)
}

/// Writes the PEFT form of the mlx-lm adapters in `src` into `dst`.
pub fn mlx_to_peft(src: &Path, dst: &Path, base_model: &str) -> Result<()> {
    let config: AdapterConfig = read_json(&src.join("adapter_config.json"))?;
    if config.fine_tune_type == "full" {
        return Err(Error::Invalid(format!(
            "{}: a fully fine-tuned run has no adapters for PEFT; export it as a fused Hugging Face folder",
            src.display()
        )));
    }
    let p = &config.lora_parameters;
    let weights = load(&src.join("adapters.safetensors"))?;
    let mut out = HashMap::new();
    let mut layers = BTreeSet::new();
    let mut modules = BTreeSet::new();
    let conv1d = weights.keys().any(|k| k.starts_with("transformer.h."));
    for (key, value) in &weights {
        if let Some(stem) = key.strip_suffix(".m") {
            // DoRA's magnitudes: a vector, the same in both formats.
            layers.extend(layer_of(stem));
            out.insert(
                format!("{PEFT_PREFIX}{stem}.lora_magnitude_vector"),
                value.clone(),
            );
            continue;
        }
        let (stem, kind) = if let Some(stem) = key.strip_suffix(".lora_a") {
            (stem, "lora_A")
        } else if let Some(stem) = key.strip_suffix(".lora_b") {
            (stem, "lora_B")
        } else {
            return Err(Error::Invalid(format!(
                "{}: unexpected key `{key}`",
                src.display()
            )));
        };
        layers.extend(layer_of(stem));
        modules.extend(stem.rsplit('.').next().map(str::to_string));
        // PEFT stores nn.Linear-shaped weights: (r, in) and (out, r).
        out.insert(format!("{PEFT_PREFIX}{stem}.{kind}.weight"), value.t());
    }
    std::fs::create_dir_all(dst).map_err(|source| Error::Io {
        path: dst.into(),
        source,
    })?;
    save(&out, &dst.join("adapter_model.safetensors"))?;
    let alpha = p.alpha.unwrap_or(p.scale * p.rank as f32);
    let peft_config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": p.rank,
        "lora_alpha": alpha,
        "lora_dropout": p.dropout,
        "target_modules": modules.into_iter().collect::<Vec<_>>(),
        "layers_to_transform": layers.into_iter().collect::<Vec<_>>(),
        "bias": "none",
        // GPT-2's Conv1D layers store weights as (in, out).
        "fan_in_fan_out": conv1d,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_dora": config.fine_tune_type == "dora",
        "use_rslora": false,
        "modules_to_save": null,
    });
    write_atomic(
        &dst.join("adapter_config.json"),
        serde_json::to_string_pretty(&peft_config)
            .expect("json")
            .as_bytes(),
    )
}

/// Writes the mlx-lm form of the PEFT adapters in `src` into `dst`. The
/// adapted layers must be the model's last N (what mlx-lm can express).
pub fn peft_to_mlx(src: &Path, dst: &Path) -> Result<()> {
    let config_path = src.join("adapter_config.json");
    let config: serde_json::Value = read_json(&config_path)?;
    let peft_type = config
        .get("peft_type")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if peft_type != "LORA" {
        return Err(Error::Invalid(format!(
            "{}: peft_type `{peft_type}` is not LORA",
            config_path.display()
        )));
    }
    let dora = config.get("use_dora").and_then(|v| v.as_bool()) == Some(true);
    let rank = config
        .get("r")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| Error::Invalid(format!("{}: `r` is missing", config_path.display())))?
        as i32;
    let alpha = config
        .get("lora_alpha")
        .and_then(|v| v.as_f64())
        .unwrap_or(rank as f64) as f32;
    let weights_path = src.join("adapter_model.safetensors");
    let weights = load(&weights_path)?;
    let mut out = HashMap::new();
    let mut layers = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for (key, value) in &weights {
        let bare = key
            .strip_prefix(PEFT_PREFIX)
            .unwrap_or(key)
            .replace(".default.", ".");
        let magnitude = bare
            .strip_suffix(".lora_magnitude_vector.weight")
            .or_else(|| bare.strip_suffix(".lora_magnitude_vector"));
        if let Some(stem) = magnitude {
            out.insert(format!("{stem}.m"), value.clone());
            continue;
        }
        let (stem, kind) = if let Some(stem) = bare.strip_suffix(".lora_A.weight") {
            (stem.to_string(), "lora_a")
        } else if let Some(stem) = bare.strip_suffix(".lora_B.weight") {
            (stem.to_string(), "lora_b")
        } else {
            return Err(Error::Invalid(format!(
                "{}: unexpected key `{key}`",
                weights_path.display()
            )));
        };
        let (layer, inner) = split_layer(&stem).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: `{key}` is not inside a decoder layer",
                weights_path.display()
            ))
        })?;
        layers.insert(layer);
        // mlx-lm names a module by its path inside the layer (self_attn.q_proj).
        keys.insert(inner.to_string());
        out.insert(format!("{stem}.{kind}"), value.t());
    }
    let (first, last) = match (layers.first(), layers.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => {
            return Err(Error::Invalid(format!(
                "{}: no LoRA weights",
                weights_path.display()
            )))
        }
    };
    if layers.len() != last - first + 1 {
        return Err(Error::Invalid(format!(
            "{}: adapted layers {layers:?} are not contiguous; mlx-lm adapts the last N layers",
            weights_path.display()
        )));
    }
    std::fs::create_dir_all(dst).map_err(|source| Error::Io {
        path: dst.into(),
        source,
    })?;
    save(&out, &dst.join("adapters.safetensors"))?;
    let mlx_config = AdapterConfig {
        fine_tune_type: if dora { "dora" } else { "lora" }.into(),
        num_layers: layers.len(),
        lora_parameters: LoraParameters {
            rank,
            scale: alpha / rank as f32,
            dropout: config
                .get("lora_dropout")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0) as f32,
            keys: keys.into_iter().collect(),
            alpha: Some(alpha),
        },
    };
    write_atomic(
        &dst.join("adapter_config.json"),
        serde_json::to_string_pretty(&mlx_config)
            .expect("json")
            .as_bytes(),
    )
}
