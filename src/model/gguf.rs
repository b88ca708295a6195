//! GGUF files (llama.cpp, Ollama, LM Studio): configuration and tokenizer from
//! the metadata, tensors renamed to Hugging Face names. Q4_0 / Q4_1 / Q8_0
//! tensors stay MLX-quantized (group 32); F32 / F16 / BF16 load as they are.

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::{io::GgufFile, Array};

use super::config::LlamaConfig;
use super::weights::Weights;
use crate::error::{Error, Result};

/// What a GGUF file holds besides its tensors.
pub struct GgufModel {
    pub config: LlamaConfig,
    pub weights: Weights,
    pub vocab: GgufVocab,
    pub chat_template: Option<String>,
}

/// The tokenizer as GGUF stores it (`tokenizer.ggml.*`).
pub struct GgufVocab {
    /// `gpt2` (byte-level BPE) or `llama` (SentencePiece), …
    pub model: String,
    /// The pre-tokenizer name (`smollm`, `llama-bpe`, `qwen2`, …).
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub merges: Vec<String>,
    /// llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte.
    pub token_types: Vec<i32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub add_bos_token: bool,
}

/// Architectures whose GGUF layout maps onto our Llama-family decoder.
const GGUF_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2"];

pub fn load(path: &Path) -> Result<GgufModel> {
    let file = GgufFile::load(path).map_err(|e| {
        Error::Invalid(format!("{}: not a readable GGUF file: {e}", path.display()))
    })?;
    let source = path.display().to_string();
    let meta = Metadata {
        file: &file,
        source: &source,
    };
    let arch = meta.string("general.architecture")?;
    if !GGUF_ARCHITECTURES.contains(&arch.as_str()) {
        return Err(Error::Invalid(format!(
            "{source}: GGUF architecture `{arch}` is not supported; supported: {}",
            GGUF_ARCHITECTURES.join(", ")
        )));
    }
    let vocab = GgufVocab {
        model: meta.string("tokenizer.ggml.model")?,
        pre: meta.optional_string("tokenizer.ggml.pre")?,
        tokens: meta.strings("tokenizer.ggml.tokens")?,
        merges: meta
            .optional_strings("tokenizer.ggml.merges")?
            .unwrap_or_default(),
        token_types: meta
            .optional_array("tokenizer.ggml.token_type")?
            .map(|a| {
                a.as_dtype(mlx_rs::Dtype::Int32)
                    .map(|a| a.as_slice::<i32>().to_vec())
            })
            .transpose()?
            .unwrap_or_default(),
        bos_token_id: meta
            .optional_int("tokenizer.ggml.bos_token_id")?
            .map(|v| v as u32),
        eos_token_id: meta
            .optional_int("tokenizer.ggml.eos_token_id")?
            .map(|v| v as u32),
        add_bos_token: meta
            .optional_int("tokenizer.ggml.add_bos_token")?
            .is_some_and(|v| v != 0),
    };

    let mut tensors = file
        .arrays()
        .map_err(|e| Error::Invalid(format!("{source}: cannot read tensors: {e}")))?;
    let tie_word_embeddings = !tensors.contains_key("output.weight");
    let heads = meta.int(&format!("{arch}.attention.head_count"))? as i32;
    let hidden = meta.int(&format!("{arch}.embedding_length"))? as i32;
    let config = LlamaConfig {
        model_type: if arch == "qwen2" { "qwen2" } else { "llama" }.into(),
        hidden_size: hidden,
        intermediate_size: meta.int(&format!("{arch}.feed_forward_length"))? as i32,
        num_hidden_layers: meta.int(&format!("{arch}.block_count"))? as i32,
        num_attention_heads: heads,
        num_key_value_heads: meta
            .optional_int(&format!("{arch}.attention.head_count_kv"))?
            .map(|v| v as i32),
        head_dim: meta
            .optional_int(&format!("{arch}.attention.key_length"))?
            .map(|v| v as i32),
        vocab_size: vocab.tokens.len() as i32,
        rms_norm_eps: meta
            .optional_float(&format!("{arch}.attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        rope_theta: meta
            .optional_float(&format!("{arch}.rope.freq_base"))?
            .unwrap_or(10_000.0),
        rope_scaling: None,
        rope_parameters: None,
        tie_word_embeddings,
        attention_bias: false,
        mlp_bias: false,
        max_position_embeddings: meta
            .optional_int(&format!("{arch}.context_length"))?
            .map(|v| v as i32),
        bos_token_id: vocab.bos_token_id.map(Into::into),
        eos_token_id: vocab.eos_token_id.map(Into::into),
    };

    // llama.cpp stores Llama's q/k rows permuted for its RoPE layout; undo it.
    if arch != "qwen2" {
        let kv_heads = config.kv_heads();
        for block in 0..config.num_hidden_layers {
            for (name, n) in [("attn_q", heads), ("attn_k", kv_heads)] {
                for part in ["weight", "scales", "biases", "bias"] {
                    let key = format!("blk.{block}.{name}.{part}");
                    if let Some(t) = tensors.remove(&key) {
                        tensors.insert(key, unpermute_rows(&t, n)?);
                    }
                }
            }
        }
    }

    let tensors = rename_tensors(tensors);
    Ok(GgufModel {
        config,
        weights: Weights {
            source: source.clone(),
            tensors,
            group_size: 32,
        },
        chat_template: meta.optional_string("tokenizer.chat_template")?,
        vocab,
    })
}

/// Inverse of llama.cpp's `permute`: rows grouped per head as (2, d/2) were
/// stored as (d/2, 2).
fn unpermute_rows(t: &Array, heads: i32) -> Result<Array> {
    let shape = t.shape().to_vec();
    let rows = shape[0];
    let rest: Vec<i32> = shape[1..].to_vec();
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend(&rest);
    Ok(t.reshape(&split)?.swap_axes(1, 2)?.reshape(&shape)?)
}

/// GGUF tensor names → Hugging Face names.
fn rename_tensors(tensors: HashMap<String, Array>) -> HashMap<String, Array> {
    tensors
        .into_iter()
        .map(|(name, t)| (hf_name(&name), t))
        .collect()
}

fn hf_name(name: &str) -> String {
    let (stem, part) = name.rsplit_once('.').unwrap_or((name, ""));
    let stem = match stem {
        "token_embd" => "model.embed_tokens".to_string(),
        "output_norm" => "model.norm".to_string(),
        "output" => "lm_head".to_string(),
        _ => match stem.strip_prefix("blk.").and_then(|s| s.split_once('.')) {
            Some((layer, module)) => {
                let module = match module {
                    "attn_q" => "self_attn.q_proj",
                    "attn_k" => "self_attn.k_proj",
                    "attn_v" => "self_attn.v_proj",
                    "attn_output" => "self_attn.o_proj",
                    "ffn_gate" => "mlp.gate_proj",
                    "ffn_up" => "mlp.up_proj",
                    "ffn_down" => "mlp.down_proj",
                    "attn_norm" => "input_layernorm",
                    "ffn_norm" => "post_attention_layernorm",
                    other => other,
                };
                format!("model.layers.{layer}.{module}")
            }
            None => stem.to_string(),
        },
    };
    if part.is_empty() {
        stem
    } else {
        format!("{stem}.{part}")
    }
}

/// Typed access to GGUF metadata with errors that name the file and key.
struct Metadata<'a> {
    file: &'a GgufFile,
    source: &'a str,
}

impl Metadata<'_> {
    fn err(&self, key: &str, e: impl std::fmt::Display) -> Error {
        Error::Invalid(format!("{}: metadata `{key}`: {e}", self.source))
    }

    fn missing(&self, key: &str) -> Error {
        Error::Invalid(format!("{}: metadata `{key}` is missing", self.source))
    }

    fn optional_string(&self, key: &str) -> Result<Option<String>> {
        self.file
            .get_metadata_string(key)
            .map_err(|e| self.err(key, e))
    }

    fn string(&self, key: &str) -> Result<String> {
        self.optional_string(key)?.ok_or_else(|| self.missing(key))
    }

    fn optional_strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.file
            .get_metadata_strings(key)
            .map_err(|e| self.err(key, e))
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.optional_strings(key)?.ok_or_else(|| self.missing(key))
    }

    fn optional_array(&self, key: &str) -> Result<Option<Array>> {
        self.file
            .get_metadata_array(key)
            .map_err(|e| self.err(key, e))
    }

    fn optional_int(&self, key: &str) -> Result<Option<i64>> {
        self.optional_array(key)?
            .map(|a| {
                a.as_dtype(mlx_rs::Dtype::Int64)
                    .map(|a| a.as_slice::<i64>()[0])
                    .map_err(|e| self.err(key, e))
            })
            .transpose()
    }

    fn int(&self, key: &str) -> Result<i64> {
        self.optional_int(key)?.ok_or_else(|| self.missing(key))
    }

    fn optional_float(&self, key: &str) -> Result<Option<f32>> {
        self.optional_array(key)?
            .map(|a| {
                a.as_dtype(mlx_rs::Dtype::Float32)
                    .map(|a| a.as_slice::<f32>()[0])
                    .map_err(|e| self.err(key, e))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's conversion-time permutation, for checking our inverse.
    fn permute(t: &Array, heads: i32) -> Array {
        let shape = t.shape().to_vec();
        let mut split = vec![heads, 2, shape[0] / heads / 2];
        split.extend(&shape[1..]);
        t.reshape(&split)
            .unwrap()
            .swap_axes(1, 2)
            .unwrap()
            .reshape(&shape)
            .unwrap()
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let w = Array::from_iter(0..(3 * 8 * 5), &[3 * 8, 5]);
        let back = unpermute_rows(&permute(&w, 3), 3).unwrap();
        assert_eq!(back.as_slice::<i32>(), w.as_slice::<i32>());
        // and it is not the identity itself
        assert_ne!(permute(&w, 3).as_slice::<i32>(), w.as_slice::<i32>());
    }

    #[test]
    fn gguf_names_map_to_hugging_face_names() {
        assert_eq!(hf_name("token_embd.weight"), "model.embed_tokens.weight");
        assert_eq!(
            hf_name("blk.7.attn_q.scales"),
            "model.layers.7.self_attn.q_proj.scales"
        );
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight"),
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(hf_name("output.weight"), "lm_head.weight");
        assert_eq!(hf_name("output_norm.weight"), "model.norm.weight");
    }
}
