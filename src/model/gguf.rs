//! GGUF files (llama.cpp, Ollama, LM Studio) as models: configuration from
//! the metadata, tensors renamed to Hugging Face names, the tokenizer from
//! the vocabulary. The file is read by [`crate::gguf`] (memory-mapped, every
//! header value checked). Q4_0 / Q4_1 / Q8_0 tensors stay MLX-quantized
//! (group 32, exact); every other type (K-quants, Q5_x, F16, BF16) is
//! dequantized to float32.
//!
//! Read as llama.cpp reads them: Phi-3's fused `attn_qkv` (q, k, v rows) and
//! `ffn_up` (gate rows, then up) become `qkv_proj` / `gate_up_proj`, its
//! LongRoPE factors come from the `rope_factors_long` / `rope_factors_short`
//! tensors; Gemma 3's layer pattern and local RoPE base come from
//! `attention.sliding_window_pattern` (6 when absent, as llama.cpp) and
//! `rope.freq_base_swa`. Checked against transformers on tiny models that
//! llama.cpp's own converter wrote (tests/gguf_architectures.rs).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_rs::Array;

use super::architecture::{self, Architecture};
use super::config::{LlamaConfig, RopeScaling};
use super::gpt2::Gpt2Config;
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::gguf::{quants, GgufFile, TensorInfo};
use crate::tokenizer::gguf::GgufVocab;

/// A model's configuration as a GGUF file gives it.
// One value per loaded model: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum GgufConfig {
    Llama(LlamaConfig),
    Gpt2(Gpt2Config),
}

/// What a GGUF file holds.
pub struct GgufModel {
    pub config: GgufConfig,
    pub weights: Weights,
    pub vocab: GgufVocab,
    pub chat_template: Option<String>,
    /// Llama 3.x: RoPE periods from the file's `rope_freqs.weight`.
    pub rope_periods: Option<Array>,
}

/// What `ft models info` shows of a GGUF file, read from its header only.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GgufSummary {
    pub architecture: String,
    pub name: Option<String>,
    pub tensors: usize,
    /// Tensor types (llama.cpp's names) and how many tensors have each.
    pub tensor_types: BTreeMap<String, usize>,
    pub parameters: u64,
    /// Why FineTune cannot load and train the file as it is (None: it can).
    pub unsupported: Option<String>,
}

/// GGUF architectures FineTune reads.
pub fn supported_architectures() -> Vec<&'static str> {
    let mut names: Vec<&str> = architecture::ARCHITECTURES
        .iter()
        .map(|a| a.gguf)
        .filter(|g| !g.is_empty())
        .collect();
    names.push("gpt2");
    names
}

/// Describes a GGUF file from its header, without loading tensors.
pub fn describe(path: &Path) -> Result<GgufSummary> {
    let file = GgufFile::open(path)?;
    let arch = file.get_str("general.architecture")?.unwrap_or("<missing>");
    let mut tensor_types = BTreeMap::new();
    for (ty, count) in file.type_counts() {
        tensor_types.insert(ty.name().to_string(), count);
    }
    let parameters = file.tensors().iter().map(|t| t.n_elements() as u64).sum();
    let unsupported = check_supported(&file).err().map(|e| e.to_string());
    Ok(GgufSummary {
        architecture: arch.to_string(),
        name: file.get_str("general.name")?.map(str::to_string),
        tensors: file.tensors().len(),
        tensor_types,
        parameters,
        unsupported,
    })
}

/// The architecture is one we run and every tensor type one we read.
fn check_supported(file: &GgufFile) -> Result<()> {
    let source = file.path().display();
    let arch = required_str(file, "general.architecture")?;
    if arch != "gpt2" && architecture::by_gguf_name(arch).is_none() {
        return Err(Error::Invalid(format!(
            "{source}: GGUF architecture `{arch}` is not supported; supported: {}",
            supported_architectures().join(", ")
        )));
    }
    file.ensure_supported()
}

pub fn load(path: &Path) -> Result<GgufModel> {
    let file = GgufFile::open(path)?;
    check_supported(&file)?;
    let vocab = GgufVocab::read(&file)?;
    let arch_name = required_str(&file, "general.architecture")?.to_string();
    let chat_template = file.get_str("tokenizer.chat_template")?.map(str::to_string);
    let source = path.display().to_string();
    if arch_name == "gpt2" {
        let config = gpt2_config(&file, &vocab)?;
        let tensors = read_tensors(&file, false)?;
        let weights = Weights {
            source,
            tensors: rename_gpt2(tensors),
            group_size: 32,
        };
        return Ok(GgufModel {
            config: GgufConfig::Gpt2(config),
            weights,
            vocab,
            chat_template,
            rope_periods: None,
        });
    }
    let arch = architecture::by_gguf_name(&arch_name).expect("checked above");
    let mut config = llama_config(&file, arch, &vocab)?;
    let mut tensors = read_tensors(&file, true)?;
    long_rope_factors(&file, &mut config, &mut tensors)?;
    let rope_periods = match tensors.remove("rope_freqs.weight") {
        Some(factors) => Some(llama3_periods(&config, &factors)?),
        None => None,
    };
    if arch.gguf_permuted_qk {
        unpermute_qk(&mut tensors, &config)?;
    }
    let mut tensors = rename_llama(tensors, arch);
    if arch.gemma {
        // llama.cpp stores Gemma's norm gains with the 1 of `(1 + w)` added.
        for (name, t) in tensors.iter_mut() {
            if name.contains("norm.weight") {
                *t = t.subtract(Array::from_f32(1.0))?;
            }
        }
    }
    config.tie_word_embeddings = !tensors.contains_key("lm_head.weight");
    Ok(GgufModel {
        config: GgufConfig::Llama(config),
        weights: Weights {
            source,
            tensors,
            group_size: 32,
        },
        vocab,
        chat_template,
        rope_periods,
    })
}

fn required_str<'a>(file: &'a GgufFile, key: &str) -> Result<&'a str> {
    file.get_str(key)?.ok_or_else(|| missing(file, key))
}

fn missing(file: &GgufFile, key: &str) -> Error {
    Error::Invalid(format!(
        "{}: metadata `{key}` is missing",
        file.path().display()
    ))
}

/// A positive size from the metadata, as the i32 the model uses.
fn size(file: &GgufFile, key: &str) -> Result<Option<i32>> {
    match file.get_u64(key)? {
        None => Ok(None),
        Some(v) if v > 0 && v <= i32::MAX as u64 => Ok(Some(v as i32)),
        Some(v) => Err(Error::Invalid(format!(
            "{}: metadata `{key}` is {v}; it must be between 1 and {}",
            file.path().display(),
            i32::MAX
        ))),
    }
}

fn required_size(file: &GgufFile, key: &str) -> Result<i32> {
    size(file, key)?.ok_or_else(|| missing(file, key))
}

/// A finite, positive float from the metadata.
fn positive_float(file: &GgufFile, key: &str) -> Result<Option<f32>> {
    match file.get_f32(key)? {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(Error::Invalid(format!(
            "{}: metadata `{key}` is {v}; it must be a positive number",
            file.path().display()
        ))),
        v => Ok(v),
    }
}

fn llama_config(file: &GgufFile, arch: &Architecture, vocab: &GgufVocab) -> Result<LlamaConfig> {
    let a = arch.gguf;
    let key = |k: &str| format!("{a}.{k}");
    let hidden = required_size(file, &key("embedding_length"))?;
    let heads = required_size(file, &key("attention.head_count"))?;
    let layers = required_size(file, &key("block_count"))?;
    let head_dim = size(file, &key("attention.key_length"))?;
    // llama.cpp writes a window of 0 for "none" (Phi-3).
    let window = match file.get_u64(&key("attention.sliding_window"))? {
        Some(0) => None,
        _ => size(file, &key("attention.sliding_window"))?,
    };
    let (sliding_window_pattern, layer_types) =
        window_pattern(file, &key("attention.sliding_window_pattern"), layers)?;
    // RoPE on the first `rope.dimension_count` features of each head only.
    let head = head_dim.unwrap_or(hidden / heads);
    let partial_rotary_factor = match size(file, &key("rope.dimension_count"))? {
        Some(d) if d < head => Some(d as f32 / head as f32),
        _ => None,
    };
    let rope_scaling = match file.get_str(&key("rope.scaling.type"))? {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling {
            rope_type: "linear".into(),
            rope_theta: None,
            factor: positive_float(file, &key("rope.scaling.factor"))?.unwrap_or(1.0),
            low_freq_factor: None,
            high_freq_factor: None,
            original_max_position_embeddings: None,
            short_factor: None,
            long_factor: None,
            attention_factor: None,
            partial_rotary_factor: None,
        }),
        Some(other) => {
            return Err(Error::Invalid(format!(
                "{}: RoPE scaling `{other}` is not supported (supported: linear, and Llama 3's rope_freqs)",
                file.path().display()
            )))
        }
    };
    // llama.cpp: Gemma 27B scales queries by hidden / heads, the others by head_dim.
    let query_pre_attn_scalar = match (a, layers) {
        ("gemma2", 46) | ("gemma3", 62) => Some(hidden as f32 / heads as f32),
        _ => None,
    };
    let config = LlamaConfig {
        model_type: arch.model_type.into(),
        hidden_size: hidden,
        intermediate_size: required_size(file, &key("feed_forward_length"))?,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: size(file, &key("attention.head_count_kv"))?,
        head_dim,
        vocab_size: i32::try_from(vocab.tokens.len()).map_err(|_| {
            Error::Invalid(format!("{}: vocabulary too large", file.path().display()))
        })?,
        rms_norm_eps: positive_float(file, &key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        rope_theta: positive_float(file, &key("rope.freq_base"))?.unwrap_or(10_000.0),
        rope_scaling,
        rope_parameters: None,
        rope_local_base_freq: positive_float(file, &key("rope.freq_base_swa"))?,
        // Qwen GGUFs keep no window switch: their window is off.
        sliding_window: if arch.model_type.starts_with("qwen") {
            None
        } else {
            window
        },
        use_sliding_window: None,
        max_window_layers: None,
        sliding_window_pattern,
        layer_types,
        query_pre_attn_scalar,
        attn_logit_softcapping: positive_float(file, &key("attn_logit_softcapping"))?,
        final_logit_softcapping: positive_float(file, &key("final_logit_softcapping"))?,
        original_max_position_embeddings: size(file, &key("rope.scaling.original_context_length"))?,
        partial_rotary_factor,
        hidden_act: None,
        hidden_activation: None,
        tie_word_embeddings: false,
        attention_bias: false,
        mlp_bias: false,
        max_position_embeddings: size(file, &key("context_length"))?,
        bos_token_id: vocab.bos_token_id.map(Into::into),
        eos_token_id: vocab.eos_token_id.map(Into::into),
    };
    config
        .validate()
        .map_err(|e| Error::Invalid(format!("{}: {e}", file.path().display())))?;
    Ok(config)
}

/// llama.cpp's `attention.sliding_window_pattern`: an integer n (every n-th
/// layer global; only Gemma 3 reads it) or one bool per layer (true: sliding).
fn window_pattern(
    file: &GgufFile,
    key: &str,
    layers: i32,
) -> Result<(Option<i32>, Option<Vec<String>>)> {
    match file.value(key) {
        None => Ok((None, None)),
        Some(crate::gguf::Value::Array(crate::gguf::Array::Bool(flags))) => {
            if flags.len() != layers as usize {
                return Err(Error::Invalid(format!(
                    "{}: `{key}` lists {} layers, the model has {layers}",
                    file.path().display(),
                    flags.len()
                )));
            }
            let kinds = flags
                .iter()
                .map(|&s| {
                    if s {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    }
                    .to_string()
                })
                .collect();
            Ok((None, Some(kinds)))
        }
        Some(_) => Ok((Some(required_size(file, key)?), None)),
    }
}

/// Phi-3's LongRoPE in GGUF: the factor sets are the tensors
/// `rope_factors_long.weight` / `rope_factors_short.weight`, the attention
/// factor `rope.scaling.attn_factor`, the original context
/// `rope.scaling.original_context_length` (already in `config`).
fn long_rope_factors(
    file: &GgufFile,
    config: &mut LlamaConfig,
    tensors: &mut HashMap<String, Array>,
) -> Result<()> {
    let long = tensors.remove("rope_factors_long.weight");
    let short = tensors.remove("rope_factors_short.weight");
    let (long, short) = match (long, short) {
        (None, None) => return Ok(()),
        (Some(l), Some(s)) => (l, s),
        _ => {
            return Err(Error::Invalid(format!(
                "{}: LongRoPE needs both rope_factors_long and rope_factors_short",
                file.path().display()
            )))
        }
    };
    if config.original_max_position_embeddings.is_none() {
        return Err(missing(
            file,
            &format!("{}.rope.scaling.original_context_length", file_arch(file)?),
        ));
    }
    let attn_key = format!("{}.rope.scaling.attn_factor", file_arch(file)?);
    config.rope_scaling = Some(RopeScaling {
        rope_type: "longrope".into(),
        rope_theta: None,
        factor: 1.0,
        low_freq_factor: None,
        high_freq_factor: None,
        original_max_position_embeddings: config.original_max_position_embeddings,
        short_factor: Some(short.as_slice::<f32>().to_vec()),
        long_factor: Some(long.as_slice::<f32>().to_vec()),
        attention_factor: positive_float(file, &attn_key)?,
        partial_rotary_factor: None,
    });
    Ok(())
}

fn file_arch(file: &GgufFile) -> Result<&str> {
    required_str(file, "general.architecture")
}

fn gpt2_config(file: &GgufFile, vocab: &GgufVocab) -> Result<Gpt2Config> {
    let config = Gpt2Config {
        model_type: "gpt2".into(),
        vocab_size: vocab.tokens.len() as i32,
        n_positions: required_size(file, "gpt2.context_length")?,
        n_embd: required_size(file, "gpt2.embedding_length")?,
        n_layer: required_size(file, "gpt2.block_count")?,
        n_head: required_size(file, "gpt2.attention.head_count")?,
        n_inner: size(file, "gpt2.feed_forward_length")?,
        layer_norm_epsilon: positive_float(file, "gpt2.attention.layer_norm_epsilon")?
            .unwrap_or(1e-5),
        activation_function: "gelu_new".into(),
        bos_token_id: vocab.bos_token_id.map(Into::into),
        eos_token_id: vocab.eos_token_id.map(Into::into),
    };
    config
        .validate()
        .map_err(|e| Error::Invalid(format!("{}: {e}", file.path().display())))?;
    Ok(config)
}

/// Every tensor as an MLX array by its GGUF name: with `keep_packed`,
/// quantized types MLX represents exactly stay packed (`X.weight`,
/// `X.scales`, `X.biases`); the rest become float32.
fn read_tensors(file: &GgufFile, keep_packed: bool) -> Result<HashMap<String, Array>> {
    let mut tensors = HashMap::new();
    for t in file.tensors() {
        let shape = t.shape();
        let (stem, part) = t.name.rsplit_once('.').unwrap_or((&t.name, ""));
        let packed = (keep_packed && part == "weight" && shape.len() == 2)
            .then(|| quants::to_mlx_affine(t.ggml_type, file.tensor_bytes(t), t.n_elements()))
            .flatten();
        match packed {
            Some(q) => {
                let (rows, cols) = (shape[0], shape[1]);
                let words = cols * q.bits / 32;
                let groups = cols / q.group_size;
                tensors.insert(t.name.clone(), Array::from_slice(&q.packed, &[rows, words]));
                let scales = Array::from_slice(&q.scales, &[rows, groups]);
                let biases = Array::from_slice(&q.biases, &[rows, groups]);
                tensors.insert(format!("{stem}.scales"), scales);
                tensors.insert(format!("{stem}.biases"), biases);
            }
            None => {
                tensors.insert(t.name.clone(), dense(file, t)?);
            }
        }
    }
    Ok(tensors)
}

fn dense(file: &GgufFile, t: &TensorInfo) -> Result<Array> {
    let values = file.dequantize(t)?;
    Ok(Array::from_slice(&values, &t.shape()))
}

/// Llama 3.x in GGUF: `rope_freqs.weight` divides each frequency
/// (llama.cpp's rope factors), so the period is `base^(2i/d) · factor`.
fn llama3_periods(config: &LlamaConfig, factors: &Array) -> Result<Array> {
    let dims = config.head_dim();
    if factors.size() as i32 != dims / 2 {
        return Err(Error::Invalid(format!(
            "rope_freqs.weight has {} values; head_dim {dims} needs {}",
            factors.size(),
            dims / 2
        )));
    }
    let factors = factors.as_slice::<f32>().to_vec();
    let periods: Vec<f32> = factors
        .iter()
        .enumerate()
        .map(|(i, f)| config.rope_theta.powf(2.0 * i as f32 / dims as f32) * f)
        .collect();
    Ok(Array::from_slice(&periods, &[dims / 2]))
}

/// llama.cpp stores Llama's q/k rows permuted for its RoPE layout; undo it.
fn unpermute_qk(tensors: &mut HashMap<String, Array>, config: &LlamaConfig) -> Result<()> {
    let heads = config.num_attention_heads;
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
    Ok(())
}

/// Inverse of llama.cpp's `permute`: rows grouped per head as (2, d/2) were
/// stored as (d/2, 2).
pub(crate) fn unpermute_rows(t: &Array, heads: i32) -> Result<Array> {
    let shape = t.shape().to_vec();
    let rows = shape[0];
    if heads <= 0 || rows % (heads * 2) != 0 {
        return Err(Error::Invalid(format!(
            "a q/k tensor has {rows} rows, not a multiple of 2 × {heads} heads"
        )));
    }
    let rest: Vec<i32> = shape[1..].to_vec();
    let mut split = vec![heads, rows / heads / 2, 2];
    split.extend(&rest);
    Ok(t.reshape(&split)?.swap_axes(1, 2)?.reshape(&shape)?)
}

fn rename_llama(tensors: HashMap<String, Array>, arch: &Architecture) -> HashMap<String, Array> {
    tensors
        .into_iter()
        .map(|(name, t)| (hf_name(&name, arch), t))
        .collect()
}

/// GGUF tensor names → Hugging Face names (Llama family; Phi-3's fused
/// `attn_qkv` / `ffn_up` are `qkv_proj` / `gate_up_proj`). `ffn_norm` is
/// the norm before the MLP: Llama's `post_attention_layernorm`, Gemma's
/// `pre_feedforward_layernorm` (Gemma's `post_attention_norm` is the norm of
/// the attention's output).
fn hf_name(name: &str, arch: &Architecture) -> String {
    let (gemma, fused) = (arch.gemma, arch.fused_projections);
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
                    "attn_qkv" => "self_attn.qkv_proj",
                    "ffn_up" if fused => "mlp.gate_up_proj",
                    "attn_output" => "self_attn.o_proj",
                    "attn_q_norm" => "self_attn.q_norm",
                    "attn_k_norm" => "self_attn.k_norm",
                    "ffn_gate" => "mlp.gate_proj",
                    "ffn_up" => "mlp.up_proj",
                    "ffn_down" => "mlp.down_proj",
                    "attn_norm" => "input_layernorm",
                    "ffn_norm" if gemma => "pre_feedforward_layernorm",
                    "ffn_norm" => "post_attention_layernorm",
                    "post_attention_norm" => "post_attention_layernorm",
                    "post_ffw_norm" => "post_feedforward_layernorm",
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

/// GPT-2's GGUF names → Hugging Face's, with the projections turned back
/// into `Conv1D`'s (in, out) layout (GGUF stores them (out, in)).
fn rename_gpt2(tensors: HashMap<String, Array>) -> HashMap<String, Array> {
    let mut out = HashMap::new();
    for (name, t) in tensors {
        let (stem, part) = name.rsplit_once('.').unwrap_or((&name, ""));
        let (hf, conv1d) = match stem {
            "token_embd" => ("transformer.wte".to_string(), false),
            "position_embd" => ("transformer.wpe".to_string(), false),
            "output_norm" => ("transformer.ln_f".to_string(), false),
            "output" => ("lm_head".to_string(), false),
            _ => match stem.strip_prefix("blk.").and_then(|s| s.split_once('.')) {
                Some((layer, module)) => {
                    let (module, conv1d) = match module {
                        "attn_norm" => ("ln_1", false),
                        "attn_qkv" => ("attn.c_attn", true),
                        "attn_output" => ("attn.c_proj", true),
                        "ffn_norm" => ("ln_2", false),
                        "ffn_up" => ("mlp.c_fc", true),
                        "ffn_down" => ("mlp.c_proj", true),
                        other => (other, false),
                    };
                    (format!("transformer.h.{layer}.{module}"), conv1d)
                }
                None => (stem.to_string(), false),
            },
        };
        let t = if conv1d && part == "weight" { t.t() } else { t };
        out.insert(format!("{hf}.{part}"), t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama() -> &'static Architecture {
        architecture::by_gguf_name("llama").unwrap()
    }

    fn gemma() -> &'static Architecture {
        architecture::by_gguf_name("gemma3").unwrap()
    }

    #[test]
    fn phi3_fused_names_map_to_the_fused_projections() {
        let phi3 = architecture::by_gguf_name("phi3").unwrap();
        assert_eq!(
            hf_name("blk.1.attn_qkv.weight", phi3),
            "model.layers.1.self_attn.qkv_proj.weight"
        );
        assert_eq!(
            hf_name("blk.1.ffn_up.weight", phi3),
            "model.layers.1.mlp.gate_up_proj.weight"
        );
        // elsewhere ffn_up is the up projection alone
        assert_eq!(
            hf_name("blk.1.ffn_up.weight", llama()),
            "model.layers.1.mlp.up_proj.weight"
        );
    }

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
        // rows that do not split into heads are an error, not a panic
        assert!(unpermute_rows(&w, 5).is_err());
    }

    #[test]
    fn gguf_names_map_to_hugging_face_names() {
        assert_eq!(
            hf_name("token_embd.weight", llama()),
            "model.embed_tokens.weight"
        );
        assert_eq!(
            hf_name("blk.7.attn_q.scales", llama()),
            "model.layers.7.self_attn.q_proj.scales"
        );
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight", llama()),
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(hf_name("output.weight", llama()), "lm_head.weight");
        assert_eq!(hf_name("output_norm.weight", llama()), "model.norm.weight");
    }

    #[test]
    fn gemma_norm_names_map_to_the_sandwich_norms() {
        assert_eq!(
            hf_name("blk.3.ffn_norm.weight", gemma()),
            "model.layers.3.pre_feedforward_layernorm.weight"
        );
        assert_eq!(
            hf_name("blk.3.post_attention_norm.weight", gemma()),
            "model.layers.3.post_attention_layernorm.weight"
        );
        assert_eq!(
            hf_name("blk.3.post_ffw_norm.weight", gemma()),
            "model.layers.3.post_feedforward_layernorm.weight"
        );
        assert_eq!(
            hf_name("blk.3.attn_k_norm.weight", gemma()),
            "model.layers.3.self_attn.k_norm.weight"
        );
    }
}
