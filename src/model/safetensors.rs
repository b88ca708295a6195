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
    let group_size = quantization_group_size(&config_path, &read_json(&config_path)?)?;
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

/// `quantization.group_size` of an mlx-lm quantized folder (64 when absent).
fn quantization_group_size(path: &Path, config: &serde_json::Value) -> Result<i32> {
    let Some(q) = config.get("quantization") else {
        return Ok(64);
    };
    let bad = |what: String| Error::Invalid(format!("{}: quantization: {what}", path.display()));
    if !q.is_object() {
        return Err(bad("expected an object with group_size and bits".into()));
    }
    let group_size = match q.get("group_size") {
        None => 64,
        Some(g) => match g.as_i64() {
            Some(g @ (32 | 64 | 128)) => g as i32,
            _ => return Err(bad(format!("group_size: expected 32, 64 or 128, got {g}"))),
        },
    };
    if let Some(bits) = q.get("bits") {
        if !matches!(bits.as_i64(), Some(2 | 3 | 4 | 5 | 6 | 8)) {
            return Err(bad(format!(
                "bits: expected 2, 3, 4, 5, 6 or 8, got {bits}"
            )));
        }
    }
    Ok(group_size)
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
    let mut shards = BTreeSet::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::Invalid(format!(
                "{}: weight_map: `{tensor}`: expected a file name",
                index.display()
            ))
        })?;
        // A shard lies beside the index: a path elsewhere is refused.
        let plain = Path::new(file)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if file.is_empty() || !plain {
            return Err(Error::Invalid(format!(
                "{}: weight_map: `{tensor}`: expected a file name in this folder, got `{file}`",
                index.display()
            )));
        }
        shards.insert(file.to_string());
    }
    Ok(shards.into_iter().collect())
}

fn read_safetensors_file(path: &Path) -> Result<HashMap<String, Array>> {
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "{}: missing (listed in the index)",
            path.display()
        )));
    }
    // MLX's reader trusts more of the header than it should (and names its
    // own source files when it does not): the header is checked here first.
    check_safetensors_header(path)?;
    Array::load_safetensors(path).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a readable safetensors file: {}",
            path.display(),
            crate::error::without_source_locations(&e.to_string())
        ))
    })
}

/// The largest JSON header read (the safetensors format's own limit).
const MAX_HEADER: u64 = 100 << 20;

/// Bytes per element of a safetensors dtype MLX reads.
fn safetensors_dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" | "C64" => 8,
        _ => return None,
    })
}

/// Checks a safetensors file's header against the file: an 8-byte length
/// inside the file, a JSON object of tensors each with a known `dtype`, a
/// `shape` of non-negative dimensions and `data_offsets` that lie inside
/// the data, agree with dtype × shape and do not overlap another tensor's.
/// Reads only the header.
pub fn check_safetensors_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let bad = |what: String| Error::Invalid(format!("{}: {what}", path.display()));
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    if file_len < 8 {
        return Err(bad(format!(
            "header length: expected 8 bytes, the file has {file_len} (not a safetensors file?)"
        )));
    }
    file.read_exact(&mut len).map_err(io)?;
    let header_len = u64::from_le_bytes(len);
    if header_len > file_len - 8 || header_len > MAX_HEADER {
        return Err(bad(format!(
            "header length: {header_len} bytes, expected at most {} (the rest of the file{}; truncated?)",
            (file_len - 8).min(MAX_HEADER),
            if file_len - 8 > MAX_HEADER {
                ", capped at 100 MiB"
            } else {
                ""
            }
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let data_len = file_len - 8 - header_len;
    let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("header: expected a JSON object of tensors: {e}")))?;
    let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(json.len());
    for (name, info) in &json {
        if name == "__metadata__" {
            continue; // free-form strings; nothing read from it
        }
        let field = |what: &str| bad(format!("tensor `{name}`: {what}"));
        let dtype = info
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| field("dtype: expected a string"))?;
        let size = safetensors_dtype_size(dtype).ok_or_else(|| {
            field(&format!(
                "dtype: `{dtype}` is not one of BOOL, U8, I8, U16, I16, F16, BF16, U32, I32, F32, U64, I64, F64"
            ))
        })?;
        let shape = info
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| field("shape: expected an array of dimensions"))?;
        let mut elements: u64 = 1;
        for d in shape {
            let d = d
                .as_u64()
                .filter(|&d| d <= i32::MAX as u64)
                .ok_or_else(|| {
                    field(&format!(
                        "shape: expected dimensions from 0 to {}, got {d}",
                        i32::MAX
                    ))
                })?;
            elements = elements
                .checked_mul(d)
                .ok_or_else(|| field("shape: the element count overflows"))?;
        }
        let offsets = info
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .ok_or_else(|| {
                field("data_offsets: expected [begin, end], two non-negative integers")
            })?;
        let (begin, end) = offsets;
        if begin > end || end > data_len {
            return Err(field(&format!(
                "data_offsets: [{begin}, {end}] lies outside the {data_len} bytes of data (truncated file?)"
            )));
        }
        let expected = elements
            .checked_mul(size)
            .ok_or_else(|| field("shape: the byte count overflows"))?;
        if end - begin != expected {
            return Err(field(&format!(
                "data_offsets: [{begin}, {end}] holds {} bytes, expected {expected} ({dtype} × shape {shape:?})",
                end - begin,
                shape = shape.iter().map(|d| d.as_u64().unwrap_or(0)).collect::<Vec<_>>()
            )));
        }
        spans.push((begin, end, name));
    }
    spans.sort_unstable();
    for pair in spans.windows(2) {
        let ((_, end_a, a), (begin_b, _, b)) = (pair[0], pair[1]);
        if begin_b < end_a {
            return Err(bad(format!(
                "tensor `{b}`: data_offsets: overlaps tensor `{a}` (starts at {begin_b}, before {a} ends at {end_a})"
            )));
        }
    }
    Ok(())
}
