//! Hugging Face folders: `config.json`, `model.safetensors` or shards listed
//! in `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use mlx_rs::Array;

use super::config::LlamaConfig;
use super::weights::Weights;
use super::LoadedModel;
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
    let config = LlamaConfig::from_file(&config_path)?;
    let tensors = read_safetensors(dir)?;
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
    let model = weights.into_llama(config)?;

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

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: not valid JSON: {e}", path.display())))
}

/// All tensors of the folder: one file, or the shards of the index.
pub fn read_safetensors(dir: &Path) -> Result<HashMap<String, Array>> {
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<String> = if index.exists() {
        let json = read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| {
                Error::Invalid(format!("{}: no `weight_map` object", index.display()))
            })?;
        let shards: BTreeSet<String> = map
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        shards.into_iter().collect()
    } else if dir.join("model.safetensors").exists() {
        vec!["model.safetensors".into()]
    } else {
        return Err(Error::Invalid(format!(
            "{}: no model.safetensors or model.safetensors.index.json",
            dir.display()
        )));
    };
    let mut tensors = HashMap::new();
    for file in files {
        let path = dir.join(&file);
        let shard = Array::load_safetensors(&path).map_err(|e| {
            Error::Invalid(format!(
                "{}: not a readable safetensors file: {e}",
                path.display()
            ))
        })?;
        tensors.extend(shard);
    }
    Ok(tensors)
}
