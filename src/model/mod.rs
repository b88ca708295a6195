//! Models: configuration, the architectures, and loading them from a
//! Hugging Face folder or a GGUF file.

pub mod architecture;
pub mod cache;
pub mod config;
pub mod gguf;
pub mod gpt2;
pub mod llama;
pub mod projection;
pub mod pytorch;
pub mod safetensors;
pub mod weights;

use std::path::{Path, PathBuf};

use mlx_rs::Dtype;

use crate::chat_template::ChatTemplate;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;
pub use cache::KvCache;
pub use causal_lm::{Dims, Model};

mod causal_lm;

/// A model ready to run: weights, tokenizer and chat template.
pub struct LoadedModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub source: PathBuf,
}

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Turn quantized weights into dense ones (for full-precision work).
    pub dequantize: bool,
    /// Floating-point type of weights, scales and activations. float32 by
    /// default: MLX's CPU backend has BLAS kernels for it, and only slow
    /// generic loops for float16 / bfloat16.
    pub dtype: Dtype,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dequantize: false,
            dtype: Dtype::Float32,
        }
    }
}

/// Loads a `.gguf` file or a Hugging Face folder (config.json, safetensors
/// or PyTorch `.bin` weights, tokenizer.json).
/// A hub id (`owner/name`, see [`crate::hub`]) is resolved from the Hugging
/// Face cache, downloading what is missing.
pub fn load(path: &Path, options: &LoadOptions) -> Result<LoadedModel> {
    let spec = path.to_string_lossy();
    if crate::hub::is_hub_id(&spec) {
        let dir = crate::hub::resolve(&spec, |_| {})?;
        return load(&dir, options);
    }
    let mut loaded = if path.is_dir() {
        safetensors::load_folder(path)?
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        load_gguf(path)?
    } else if !path.exists() {
        return Err(Error::Invalid(format!(
            "{}: no such file or folder",
            path.display()
        )));
    } else {
        return Err(Error::Invalid(format!(
            "{}: not a model: expected a .gguf file or a folder with config.json",
            path.display()
        )));
    };
    check_token_ids(&loaded, path)?;
    loaded.model.cast_floats(options.dtype)?;
    if options.dequantize {
        loaded.model.dequantize()?;
    }
    // Materialise the weights now: MLX is lazy, and an unevaluated
    // transformation (GGUF's row un-permutation, dequantization) would
    // otherwise be recomputed on every forward pass.
    loaded.model.eval_parameters()?;
    Ok(loaded)
}

/// Every id the tokenizer can produce must have an embedding row: MLX's
/// gather does not check, and an id past the end reads garbage (a NaN loss
/// much later) instead of failing.
fn check_token_ids(loaded: &LoadedModel, path: &Path) -> Result<()> {
    let rows = loaded.model.vocab_size().max(0) as usize;
    let ids = loaded.tokenizer.vocab_size();
    if ids > rows {
        return Err(Error::Invalid(format!(
            "{}: tokenizer: {ids} token ids, expected at most {rows} (the embedding's rows, vocab_size)",
            path.display()
        )));
    }
    for (name, id) in [
        ("bos_token", loaded.tokenizer.bos_token_id()),
        ("eos_token", loaded.tokenizer.eos_token_id()),
    ] {
        if let Some(id) = id.filter(|&id| id as usize >= rows) {
            return Err(Error::Invalid(format!(
                "{}: tokenizer: {name} has id {id}, expected below {rows} (the embedding's rows, vocab_size)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn load_gguf(path: &Path) -> Result<LoadedModel> {
    let gguf = gguf::load(path)?;
    let tokenizer = Tokenizer::from_gguf(&gguf.vocab, path)?;
    let chat_template = gguf
        .chat_template
        .as_deref()
        .map(|t| {
            ChatTemplate::new(
                t,
                tokenizer.bos_token.as_deref(),
                tokenizer.eos_token.as_deref(),
            )
        })
        .transpose()?;
    let model = match gguf.config {
        gguf::GgufConfig::Llama(config) => {
            let mut llama = gguf.weights.into_llama(config)?;
            if let Some(periods) = gguf.rope_periods {
                llama.rope.freqs = Some(periods);
            }
            Model::Llama(llama)
        }
        gguf::GgufConfig::Gpt2(config) => {
            Model::Gpt2(gpt2::Gpt2::from_weights(gguf.weights, config)?)
        }
    };
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        source: path.into(),
    })
}
