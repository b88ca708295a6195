//! Hugging Face folders: `config.json`, `model.safetensors` or shards listed
//! in `model.safetensors.index.json` (PyTorch `.bin` files the same way when
//! there is no safetensors), `tokenizer.json`, `tokenizer_config.json`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use mlx_rs::Array;

use super::config::{read_config, ModelConfig};
use super::gpt2::Gpt2;
use super::pytorch;
use super::weights::Weights;
use super::LoadedModel;
use super::Model;
use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

pub fn load_folder(dir: &Path) -> Result<LoadedModel> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        return Err(Error::Invalid(format!(
            "{}: no config.json in this folder, so it is not a Hugging Face model",
            dir.display()
        )));
    }
    let config = read_config(&config_path)?;
    let tensors = language_model_tensors(read_weights(dir)?);
    // mlx-lm writes quantized folders with a "quantization" entry.
    let group_size = read_json(&config_path)?
        .get("quantization")
        .and_then(|q| q.get("group_size"))
        .and_then(|g| g.as_i64())
        .unwrap_or(64) as i32;
    let weights = Weights {
        source: dir.display().to_string(),
        tensors,
        group_size,
    };
    let model = match config {
        ModelConfig::Llama(c) => Model::Llama(weights.into_llama(c)?),
        ModelConfig::Gpt2(c) => Model::Gpt2(Gpt2::from_weights(weights, c)?),
    };

    let tokenizer_config_path = dir.join("tokenizer_config.json");
    let tokenizer_config = if tokenizer_config_path.exists() {
        Some(read_json(&tokenizer_config_path)?)
    } else {
        None
    };
    let tokenizer = Tokenizer::from_files(&dir.join("tokenizer.json"), tokenizer_config.as_ref())?;
    let template_source = tokenizer_config
        .as_ref()
        .and_then(|c| c.get("chat_template"))
        .and_then(|t| t.as_str().map(str::to_string))
        .or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
    let chat_template = template_source
        .map(|t| {
            ChatTemplate::new(
                &t,
                tokenizer.bos_token.as_deref(),
                tokenizer.eos_token.as_deref(),
            )
        })
        .transpose()?;
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        source: dir.into(),
    })
}

/// Multimodal checkpoints (Gemma 3) keep the language model under a prefix
/// beside the vision tower: only the language model is loaded.
fn language_model_tensors(tensors: HashMap<String, Array>) -> HashMap<String, Array> {
    if !tensors.keys().any(|k| k.contains("language_model.")) {
        return tensors;
    }
    tensors
        .into_iter()
        .filter_map(|(k, v)| {
            let renamed = if let Some(rest) = k
                .strip_prefix("language_model.model.")
                .or_else(|| k.strip_prefix("model.language_model."))
            {
                format!("model.{rest}")
            } else if let Some(rest) = k.strip_prefix("language_model.lm_head.") {
                format!("lm_head.{rest}")
            } else if k.starts_with("lm_head.") {
                k
            } else {
                return None;
            };
            Some((renamed, v))
        })
        .collect()
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: not valid JSON: {e}", path.display())))
}

/// Reads every tensor of one weights file.
type ReadFile = fn(&Path) -> Result<HashMap<String, Array>>;

/// All tensors of the folder: safetensors (one file or the shards of an
/// index), or, only when there are none, PyTorch `.bin` files likewise.
pub fn read_weights(dir: &Path) -> Result<HashMap<String, Array>> {
    let layouts: [(&str, &str, ReadFile); 2] = [
        (
            "model.safetensors.index.json",
            "model.safetensors",
            read_safetensors_file,
        ),
        (
            "pytorch_model.bin.index.json",
            "pytorch_model.bin",
            pytorch::read_bin,
        ),
    ];
    for (index_name, single, read) in layouts {
        let index = dir.join(index_name);
        let files = if index.exists() {
            shards(&index)?
        } else if dir.join(single).exists() {
            vec![single.to_string()]
        } else {
            continue;
        };
        let mut tensors = HashMap::new();
        for file in files {
            tensors.extend(read(&dir.join(&file))?);
        }
        return Ok(tensors);
    }
    Err(Error::Invalid(format!(
        "{}: no weights: expected model.safetensors, model.safetensors.index.json, \
         pytorch_model.bin or pytorch_model.bin.index.json",
        dir.display()
    )))
}

/// The files an index's `weight_map` names, each once.
fn shards(index: &Path) -> Result<Vec<String>> {
    let json = read_json(index)?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Invalid(format!("{}: no `weight_map` object", index.display())))?;
    let shards: BTreeSet<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    Ok(shards.into_iter().collect())
}

fn read_safetensors_file(path: &Path) -> Result<HashMap<String, Array>> {
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "{}: missing (listed in the index)",
            path.display()
        )));
    }
    Array::load_safetensors(path).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a readable safetensors file: {e}",
            path.display()
        ))
    })
}
