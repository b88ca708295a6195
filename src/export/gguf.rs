//! Writing a model as one GGUF file, the way llama.cpp's own converter and
//! `llama-quantize` write it: llama.cpp's tensor names and layouts (Llama's
//! q/k rows permuted for its RoPE, Gemma's norms with the 1 of `(1 + w)`
//! added, GPT-2's projections as (out, in)), the hyper-parameter keys
//! llama.cpp reads, the whole tokenizer and the chat template, and each
//! tensor's type chosen per tensor as `llama-quantize` chooses it for the
//! file type ([`crate::gguf::mix`]), quantized with its algorithms
//! ([`crate::gguf::quantize`]).

use std::path::{Path, PathBuf};

use mlx_rs::Array;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::gguf::mix::{self, FileType, ModelInfo, TensorDesc};
use crate::gguf::write::{GgufWriter, TensorSpec};
use crate::gguf::{self as g, GgmlType, GgufFile, Value};
use crate::model::architecture;
use crate::model::config::LlamaConfig;
use crate::model::{LoadedModel, Model};

/// What was written, tensor by tensor.
#[derive(Debug, Clone, Serialize)]
pub struct GgufReport {
    pub path: PathBuf,
    pub file_type: String,
    pub bytes: u64,
    pub tensors: Vec<TensorReport>,
    /// What llama.cpp will do differently from FineTune with this file:
    /// settings of the model or its tokenizer GGUF cannot hold.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// llama.cpp's name.
    pub name: String,
    /// The type written.
    pub written: String,
    /// The precision the weights had before: the source file's type for a
    /// GGUF base (so a Q4_K base re-quantized to Q8_0 says so), else the
    /// dtype they were loaded in.
    pub came_from: String,
}

/// One tensor as it will be written: llama.cpp's name, its values in
/// llama.cpp's layout (row-major, rows of `dims[0]`), GGUF dims.
struct Pending {
    name: String,
    values: Array,
    dims: Vec<u64>,
}

/// Writes `loaded` (a dense model: fuse adapters and dequantize first) to
/// the new file `path` as `file_type`, named `name` (`general.name`).
pub fn write_gguf(
    loaded: &LoadedModel,
    path: &Path,
    file_type: FileType,
    name: &str,
) -> Result<GgufReport> {
    write_gguf_with_progress(loaded, path, file_type, name, &mut |_, _| {})
}

/// GGUF key–value pairs, in file order.
type Metadata = Vec<(String, Value)>;

/// Everything a GGUF of `loaded` holds but its tensor types: the metadata
/// (without `general.file_type`), the tensors in llama-quantize's order,
/// and what the mix needs to know of the model.
struct Plan {
    arch: String,
    metadata: Vec<(String, Value)>,
    tensors: Vec<Pending>,
    n_layer: usize,
    n_head: usize,
    n_head_kv: usize,
    warnings: Vec<String>,
    source_gguf: Option<GgufFile>,
}

impl Plan {
    fn new(loaded: &LoadedModel, name: &str) -> Result<Plan> {
        let source_gguf = source_gguf(&loaded.source)?;
        let (arch, mut metadata, tensors) = match &loaded.model {
            Model::Llama(m) => llama_family(&m.config, loaded.model.hf_tensors())?,
            Model::Gpt2(m) => gpt2(&m.config, loaded.model.hf_tensors())?,
        };
        metadata.splice(
            0..0,
            [
                (
                    "general.architecture".to_string(),
                    Value::String(arch.clone()),
                ),
                ("general.type".to_string(), Value::String("model".into())),
                ("general.name".to_string(), Value::String(name.into())),
            ],
        );
        // Its value is set per file type by `specs`.
        metadata.push(("general.file_type".into(), Value::U32(0)));
        metadata.push(("general.quantization_version".into(), Value::U32(2)));
        let tokenizer = tokenizer_metadata(loaded, source_gguf.as_ref())?;
        metadata.extend(tokenizer.metadata);
        let mut warnings = tokenizer.warnings;
        if let Model::Llama(m) = &loaded.model {
            warnings.splice(0..0, unsupported_settings(&m.config));
        }
        // llama-quantize's order (its per-layer counters depend on it).
        let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        let order = mix::llama_order(&names);
        let mut slots: Vec<Option<Pending>> = tensors.into_iter().map(Some).collect();
        let tensors: Vec<Pending> = order
            .iter()
            .map(|&i| slots[i].take().expect("an order visits each tensor once"))
            .collect();
        let (n_layer, n_head, n_head_kv) = match &loaded.model {
            Model::Llama(m) => (
                m.config.num_hidden_layers,
                m.config.num_attention_heads,
                m.config.kv_heads(),
            ),
            Model::Gpt2(m) => (m.config.n_layer, m.config.n_head, m.config.n_head),
        };
        Ok(Plan {
            arch,
            metadata,
            tensors,
            n_layer: n_layer as usize,
            n_head: n_head as usize,
            n_head_kv: n_head_kv as usize,
            warnings,
            source_gguf,
        })
    }

    /// The file's metadata and tensor specs for `file_type`.
    fn specs(&self, file_type: FileType) -> Result<(Metadata, Vec<TensorSpec>)> {
        let info = ModelInfo {
            arch: &self.arch,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_head_kv: self.n_head_kv,
            n_expert: 0,
            is_70b: false,
        };
        let descs: Vec<TensorDesc> = self
            .tensors
            .iter()
            .map(|t| TensorDesc {
                name: &t.name,
                dims: &t.dims,
                source: GgmlType::F32,
            })
            .collect();
        let types = mix::tensor_types(file_type, &info, &descs).map_err(Error::Invalid)?;
        let specs = self
            .tensors
            .iter()
            .zip(&types)
            .map(|(t, ty)| TensorSpec {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ggml_type: *ty,
            })
            .collect();
        let mut metadata = self.metadata.clone();
        for (key, value) in &mut metadata {
            if key == "general.file_type" {
                *value = Value::U32(file_type.id());
            }
        }
        Ok((metadata, specs))
    }
}

/// The exact size of the GGUF file [`write_gguf`] would write for each of
/// `file_types` under `name`, without writing anything (for a picker that
/// shows sizes).
pub fn planned_sizes(
    loaded: &LoadedModel,
    name: &str,
    file_types: &[FileType],
) -> Result<Vec<(FileType, u64)>> {
    let plan = Plan::new(loaded, name)?;
    file_types
        .iter()
        .map(|&t| {
            let (metadata, specs) = plan.specs(t)?;
            let bytes = crate::gguf::write::file_size(&metadata, &specs).map_err(Error::Invalid)?;
            Ok((t, bytes))
        })
        .collect()
}

/// [`write_gguf`], telling `progress` (tensors written, of how many) after
/// each tensor.
pub fn write_gguf_with_progress(
    loaded: &LoadedModel,
    path: &Path,
    file_type: FileType,
    name: &str,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GgufReport> {
    let plan = Plan::new(loaded, name)?;
    let (metadata, specs) = plan
        .specs(file_type)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let types: Vec<GgmlType> = specs.iter().map(|s| s.ggml_type).collect();
    let tensors: Vec<&Pending> = plan.tensors.iter().collect();
    let source_gguf = plan.source_gguf;
    let warnings = plan.warnings;
    let fail = |e: String| Error::Invalid(format!("{}: {e}", path.display()));
    let mut writer = GgufWriter::create(path, &metadata, &specs, false).map_err(fail)?;
    let loaded_dtype = tensors
        .first()
        .map(|t| format!("{:?}", t.values.dtype()).to_lowercase())
        .unwrap_or_default();
    let mut report = Vec::with_capacity(tensors.len());
    for (t, ty) in tensors.iter().zip(&types) {
        // Row-major float32 (a reshape copies a transposed view).
        let values = t.values.as_dtype(mlx_rs::Dtype::Float32)?.reshape(&[-1])?;
        values.eval()?;
        let values = values.as_slice::<f32>();
        let bytes = g::quantize::quantize(*ty, values, t.dims[0] as usize)
            .map_err(|e| fail(format!("tensor {}: {e}", t.name)))?;
        writer.write_data(&bytes).map_err(fail)?;
        let came_from = source_gguf
            .as_ref()
            .and_then(|f| f.tensor(&t.name))
            .map(|s| s.ggml_type.name().to_string())
            .unwrap_or_else(|| loaded_dtype.clone());
        report.push(TensorReport {
            name: t.name.clone(),
            written: ty.name().to_string(),
            came_from,
        });
        progress(report.len(), tensors.len());
    }
    let path = writer.finish().map_err(fail)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(GgufReport {
        path,
        file_type: file_type.name().to_string(),
        bytes,
        tensors: report,
        warnings,
    })
}

/// The GGUF file the model was loaded from, when it was one.
fn source_gguf(source: &Path) -> Result<Option<GgufFile>> {
    let is_gguf = source.is_file()
        && source
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        GgufFile::open(source).map(Some)
    } else {
        Ok(None)
    }
}

fn u32_value(v: i32) -> Value {
    Value::U32(v.max(0) as u32)
}

/// GGUF dims of an MLX array: innermost first.
fn dims_of(a: &Array) -> Vec<u64> {
    a.shape().iter().rev().map(|&d| d as u64).collect()
}

fn pending(name: String, values: Array) -> Pending {
    let dims = dims_of(&values);
    Pending { name, values, dims }
}

/// llama.cpp's `permute` of q/k rows: each head's rows, (2, d/2) in
/// Hugging Face's rotate-half layout, are stored interleaved (d/2, 2).
pub(crate) fn permute_rows(t: &Array, heads: i32) -> Result<Array> {
    let shape = t.shape().to_vec();
    let rows = shape[0];
    if heads <= 0 || rows % (heads * 2) != 0 {
        return Err(Error::Invalid(format!(
            "a q/k tensor has {rows} rows, not a multiple of 2 × {heads} heads"
        )));
    }
    let mut split = vec![heads, 2, rows / heads / 2];
    split.extend(&shape[1..]);
    Ok(t.reshape(&split)?.swap_axes(1, 2)?.reshape(&shape)?)
}

/// Hugging Face name → llama.cpp name (Llama family).
pub(crate) fn gguf_name(hf: &str, gemma: bool, fused: bool) -> Option<String> {
    let (stem, part) = hf.rsplit_once('.')?;
    let stem = match stem {
        "model.embed_tokens" => "token_embd".to_string(),
        "model.norm" => "output_norm".to_string(),
        "lm_head" => "output".to_string(),
        _ => {
            let rest = stem.strip_prefix("model.layers.")?;
            let (layer, module) = rest.split_once('.')?;
            let module = match module {
                "self_attn.q_proj" => "attn_q",
                "self_attn.k_proj" => "attn_k",
                "self_attn.v_proj" => "attn_v",
                "self_attn.qkv_proj" => "attn_qkv",
                "self_attn.o_proj" => "attn_output",
                "self_attn.q_norm" => "attn_q_norm",
                "self_attn.k_norm" => "attn_k_norm",
                "mlp.gate_proj" => "ffn_gate",
                "mlp.up_proj" => "ffn_up",
                "mlp.gate_up_proj" if fused => "ffn_up",
                "mlp.down_proj" => "ffn_down",
                "input_layernorm" => "attn_norm",
                "pre_feedforward_layernorm" if gemma => "ffn_norm",
                "post_attention_layernorm" if gemma => "post_attention_norm",
                "post_attention_layernorm" => "ffn_norm",
                "post_feedforward_layernorm" => "post_ffw_norm",
                _ => return None,
            };
            format!("blk.{layer}.{module}")
        }
    };
    Some(format!("{stem}.{part}"))
}

type Converted = (String, Vec<(String, Value)>, Vec<Pending>);

/// `general.architecture` as llama.cpp's converter writes it: its own name
/// for each architecture, but `llama` for Mistral (v0.1–0.3).
pub(crate) fn export_arch_name(arch: &architecture::Architecture) -> &'static str {
    if arch.model_type == "mistral" {
        "llama"
    } else {
        arch.gguf
    }
}

fn llama_family(config: &LlamaConfig, hf: Vec<(String, Array)>) -> Result<Converted> {
    let arch = architecture::by_model_type(&config.model_type).ok_or_else(|| {
        Error::Invalid(format!(
            "GGUF export: architecture `{}` has no GGUF form here",
            config.model_type
        ))
    })?;
    let a = export_arch_name(arch).to_string();
    let key = |k: &str| format!("{a}.{k}");
    let head_dim = config.head_dim();
    let mut meta: Vec<(String, Value)> = vec![
        (
            key("context_length"),
            u32_value(config.max_position_embeddings.unwrap_or(4096)),
        ),
        (key("embedding_length"), u32_value(config.hidden_size)),
        (key("block_count"), u32_value(config.num_hidden_layers)),
        (
            key("feed_forward_length"),
            u32_value(config.intermediate_size),
        ),
        (
            key("attention.head_count"),
            u32_value(config.num_attention_heads),
        ),
        (key("attention.head_count_kv"), u32_value(config.kv_heads())),
        (key("rope.freq_base"), Value::F32(config.rope_theta)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(config.rms_norm_eps),
        ),
        (key("attention.key_length"), u32_value(head_dim)),
        (key("attention.value_length"), u32_value(head_dim)),
        (key("vocab_size"), u32_value(config.vocab_size)),
        (key("rope.dimension_count"), u32_value(config.rotary_dims())),
    ];
    if let Some(base) = config.rope_local_base_freq {
        meta.push((key("rope.freq_base_swa"), Value::F32(base)));
    }
    // Windows llama.cpp reads for these architectures (it has none for
    // Llama/Mistral or Qwen2).
    let windowed = matches!(a.as_str(), "gemma2" | "gemma3" | "phi3");
    if windowed {
        let window = config
            .layer_windows()
            .into_iter()
            .flatten()
            .next()
            .unwrap_or(0);
        meta.push((key("attention.sliding_window"), u32_value(window)));
    }
    if let Some(cap) = config.attn_logit_softcapping {
        meta.push((key("attn_logit_softcapping"), Value::F32(cap)));
    }
    if let Some(cap) = config.final_logit_softcapping {
        meta.push((key("final_logit_softcapping"), Value::F32(cap)));
    }
    let mut extra = Vec::new();
    if let Some(scaling) = &config.rope_scaling {
        match scaling.rope_type.as_str() {
            "linear" => {
                meta.push((key("rope.scaling.type"), Value::String("linear".into())));
                meta.push((key("rope.scaling.factor"), Value::F32(scaling.factor)));
            }
            "llama3" => extra.push(pending(
                "rope_freqs.weight".into(),
                Array::from_slice(&llama3_factors(config, scaling), &[head_dim / 2]),
            )),
            "longrope" | "su" => {
                let (Some(long), Some(short)) = (&scaling.long_factor, &scaling.short_factor)
                else {
                    return Err(Error::Invalid(
                        "GGUF export: LongRoPE without its long and short factors".into(),
                    ));
                };
                let n = long.len() as i32;
                extra.push(pending(
                    "rope_factors_long.weight".into(),
                    Array::from_slice(long, &[n]),
                ));
                extra.push(pending(
                    "rope_factors_short.weight".into(),
                    Array::from_slice(short, &[short.len() as i32]),
                ));
                let original = config
                    .original_max_position_embeddings
                    .or(scaling.original_max_position_embeddings)
                    .unwrap_or(4096);
                meta.push((
                    key("rope.scaling.original_context_length"),
                    u32_value(original),
                ));
                let context = config.max_position_embeddings.unwrap_or(original);
                let factor = context as f32 / original as f32;
                let attn = scaling.attention_factor.unwrap_or_else(|| {
                    if factor <= 1.0 {
                        1.0
                    } else {
                        (1.0 + factor.ln() / (original as f32).ln()).sqrt()
                    }
                });
                meta.push((key("rope.scaling.attn_factor"), Value::F32(attn)));
            }
            "default" => {}
            other => {
                return Err(Error::Invalid(format!(
                    "GGUF export: RoPE scaling `{other}` has no GGUF form here"
                )))
            }
        }
    }

    let mut tensors = Vec::new();
    for (name, t) in hf {
        let Some(gname) = gguf_name(&name, arch.gemma, arch.fused_projections) else {
            return Err(Error::Invalid(format!(
                "GGUF export: tensor `{name}` has no llama.cpp name"
            )));
        };
        let mut t = t;
        if arch.gemma && gname.contains("norm.weight") {
            t = t.add(Array::from_f32(1.0))?;
        }
        if arch.gguf_permuted_qk {
            if gname.contains(".attn_q.") {
                t = permute_rows(&t, config.num_attention_heads)?;
            } else if gname.contains(".attn_k.") {
                t = permute_rows(&t, config.kv_heads())?;
            }
        }
        tensors.push(pending(gname, t));
    }
    tensors.extend(extra);
    Ok((a, meta, tensors))
}

/// Llama 3's RoPE scaling as llama.cpp's `rope_freqs`: the factor each
/// frequency is divided by (1 for short wavelengths, `factor` for long,
/// smoothly between).
fn llama3_factors(config: &LlamaConfig, s: &crate::model::config::RopeScaling) -> Vec<f32> {
    let dims = config.head_dim();
    let low = s.low_freq_factor.unwrap_or(1.0);
    let high = s.high_freq_factor.unwrap_or(4.0);
    let old = s.original_max_position_embeddings.unwrap_or(8192) as f32;
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    (0..dims / 2)
        .map(|i| {
            let freq = 1.0 / config.rope_theta.powf(2.0 * i as f32 / dims as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                s.factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / s.factor + smooth)
            }
        })
        .collect()
}

fn gpt2(config: &crate::model::gpt2::Gpt2Config, hf: Vec<(String, Array)>) -> Result<Converted> {
    let meta = vec![
        ("gpt2.context_length".into(), u32_value(config.n_positions)),
        ("gpt2.embedding_length".into(), u32_value(config.n_embd)),
        ("gpt2.block_count".into(), u32_value(config.n_layer)),
        (
            "gpt2.feed_forward_length".into(),
            u32_value(config.n_inner.unwrap_or(4 * config.n_embd)),
        ),
        ("gpt2.attention.head_count".into(), u32_value(config.n_head)),
        (
            "gpt2.attention.layer_norm_epsilon".into(),
            Value::F32(config.layer_norm_epsilon),
        ),
    ];
    let mut tensors = Vec::new();
    for (name, t) in hf {
        let (stem, part) = name.rsplit_once('.').unwrap_or((&name, ""));
        let Some((gstem, conv1d)) = gpt2_gguf_stem(stem) else {
            return Err(Error::Invalid(format!(
                "GGUF export: tensor `{name}` has no llama.cpp name"
            )));
        };
        // Conv1D keeps (in, out); llama.cpp wants (out, in).
        let t = if conv1d && part == "weight" { t.t() } else { t };
        tensors.push(pending(format!("{gstem}.{part}"), t));
    }
    // GPT-2 ties its head to the embeddings; llama.cpp reads `output` when
    // present and the embeddings otherwise, so a tied head is left out.
    tensors.retain(|t| t.name != "output.weight");
    Ok(("gpt2".into(), meta, tensors))
}

/// GPT-2's Hugging Face module name → llama.cpp's, and whether it is a
/// `Conv1D` (stored (in, out), where llama.cpp wants (out, in)).
pub(crate) fn gpt2_gguf_stem(stem: &str) -> Option<(String, bool)> {
    Some(match stem {
        "transformer.wte" => ("token_embd".to_string(), false),
        "transformer.wpe" => ("position_embd".to_string(), false),
        "transformer.ln_f" => ("output_norm".to_string(), false),
        "lm_head" => ("output".to_string(), false),
        _ => {
            let (layer, module) = stem.strip_prefix("transformer.h.")?.split_once('.')?;
            let (module, conv1d) = match module {
                "ln_1" => ("attn_norm", false),
                "attn.c_attn" => ("attn_qkv", true),
                "attn.c_proj" => ("attn_output", true),
                "ln_2" => ("ffn_norm", false),
                "mlp.c_fc" => ("ffn_up", true),
                "mlp.c_proj" => ("ffn_down", true),
                _ => return None,
            };
            (format!("blk.{layer}.{module}"), conv1d)
        }
    })
}

/// `tokenizer.*`: copied from the GGUF the model came from (exactly the
/// tokenizer it was trained with), or built from `tokenizer.json`; and
/// what llama.cpp will tokenize differently.
fn tokenizer_metadata(
    loaded: &LoadedModel,
    source: Option<&GgufFile>,
) -> Result<super::gguf_vocab::Exported> {
    let mut exported = match source {
        Some(file) => super::gguf_vocab::Exported {
            metadata: file
                .keys()
                .filter(|k| k.starts_with("tokenizer.") && *k != "tokenizer.chat_template")
                .filter_map(|k| file.value(k).map(|v| (k.to_string(), v.clone())))
                .collect(),
            warnings: Vec::new(),
        },
        None => {
            let rows = match &loaded.model {
                Model::Llama(m) => m.config.vocab_size,
                Model::Gpt2(m) => m.config.vocab_size,
            };
            let folder = loaded.source.is_dir().then_some(loaded.source.as_path());
            super::gguf_vocab::from_tokenizer_json(&loaded.tokenizer, rows.max(0) as usize, folder)?
        }
    };
    if let Some(template) = &loaded.chat_template {
        exported.metadata.push((
            "tokenizer.chat_template".into(),
            Value::String(template.source.clone()),
        ));
    }
    Ok(exported)
}

/// Settings FineTune runs that the GGUF written for `config` cannot hold,
/// each as a sentence saying what llama.cpp will do instead.
pub fn unsupported_settings(config: &LlamaConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(arch) = architecture::by_model_type(&config.model_type) else {
        return warnings;
    };
    let a = export_arch_name(arch);
    let layers = config.num_hidden_layers;
    let head_dim = config.head_dim();
    // llama.cpp scales Gemma's queries by head_dim^-0.5, but by
    // (hidden / heads)^-0.5 for its 27B sizes (46 / 62 layers).
    if matches!(a, "gemma2" | "gemma3") {
        let big = matches!((a, layers), ("gemma2", 46) | ("gemma3", 62));
        let used = if big {
            config.hidden_size as f32 / config.num_attention_heads.max(1) as f32
        } else {
            head_dim as f32
        };
        if let Some(scalar) = config.query_pre_attn_scalar {
            if (scalar - used).abs() > 1e-6 {
                warnings.push(format!(
                    "query_pre_attn_scalar is {scalar}, but GGUF has no key for it: llama.cpp \
                     scales attention scores by 1/sqrt({used}) (the {}), so the exported model \
                     computes different logits",
                    if big {
                        "hidden size over heads"
                    } else {
                        "head dimension"
                    }
                ));
            }
        }
    }
    let windows = config.layer_windows();
    let sliding: Vec<bool> = windows.iter().map(Option::is_some).collect();
    let context = config.max_position_embeddings.unwrap_or(i32::MAX);
    let window = windows.iter().flatten().copied().min();
    let list = |flags: &[bool]| {
        let idx: Vec<String> = flags
            .iter()
            .enumerate()
            .filter(|(_, &s)| s)
            .map(|(i, _)| i.to_string())
            .collect();
        if idx.is_empty() {
            "none".to_string()
        } else {
            idx.join(", ")
        }
    };
    match a {
        "gemma2" | "gemma3" => {
            // llama.cpp's patterns: Gemma 2 slides on even layers, Gemma 3
            // on all but every 6th (given a window).
            let theirs: Vec<bool> = (0..layers.max(0) as usize)
                .map(|i| window.is_some() && if a == "gemma2" { i % 2 == 0 } else { i % 6 < 5 })
                .collect();
            if theirs != sliding {
                warnings.push(format!(
                    "sliding-window layers are {} here, but the GGUF holds no layer pattern: \
                     llama.cpp uses {}'s default and slides layers {} instead, so attention \
                     past {} tokens differs",
                    list(&sliding),
                    if a == "gemma2" { "Gemma 2" } else { "Gemma 3" },
                    list(&theirs),
                    window.unwrap_or(0)
                ));
            }
        }
        _ => {
            if let Some(w) = window.filter(|&w| w < context) {
                let name = match a {
                    "phi3" => "Phi-3 (llama.cpp turns its window off)",
                    "llama" if config.model_type == "mistral" => "Mistral (written as llama)",
                    "llama" => "Llama",
                    "qwen2" => "Qwen2",
                    "qwen3" => "Qwen3",
                    other => other,
                };
                warnings.push(format!(
                    "layers {} attend to a sliding window of {w} tokens, but llama.cpp's {name} \
                     has no sliding window: past {w} tokens every layer attends to the whole \
                     context, so long prompts give other results",
                    list(&sliding)
                ));
            }
        }
    }
    warnings
}
