//! A run's LoRA adapter alone, as llama.cpp's LoRA GGUF (what `llama-cli
//! --lora` and Ollama's `ADAPTER` take), for the base GGUF it was trained
//! on: per adapted projection `blk.N.<name>.weight.lora_a` (PyTorch's
//! (r, in)) and `.lora_b` ((out, r)), `general.type = adapter`,
//! `adapter.type = lora` and `adapter.lora.alpha`, so that llama.cpp's
//! scale `alpha / r` is the run's. The base's layout rules apply to the
//! output side: Llama's q/k rows permuted, so `lora_b`'s rows are too.

use std::path::{Path, PathBuf};

use mlx_rs::Array;
use serde::Serialize;

use super::gguf::{export_arch_name, gguf_name, gpt2_gguf_stem, permute_rows};
use crate::error::{Error, Result};
use crate::gguf::write::{GgufWriter, TensorSpec};
use crate::gguf::{GgmlType, Value};
use crate::lora::{self, LoraConfig};
use crate::model::{architecture, LoadedModel, Model};

#[derive(Debug, Clone, Serialize)]
pub struct GgufLoraReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// Adapted projections (each a lora_a / lora_b pair).
    pub projections: usize,
    pub rank: i32,
    pub alpha: f32,
}

/// Writes the adapters in `adapters` (mlx-lm's layout, as runs keep them)
/// for the base `loaded` to the new file `path`.
pub fn write_gguf_lora(
    loaded: &mut LoadedModel,
    adapters: &Path,
    path: &Path,
    name: &str,
) -> Result<GgufLoraReport> {
    let config: LoraConfig = lora::load_adapters(&mut loaded.model, adapters)?;
    if config.dora || config.full {
        return Err(Error::Invalid(format!(
            "{}: llama.cpp's LoRA GGUF holds plain LoRA; this run is {} (export it fused instead: --format gguf)",
            adapters.display(),
            if config.dora { "DoRA" } else { "full fine-tuning" }
        )));
    }
    let arch = match &loaded.model {
        Model::Llama(m) => architecture::by_model_type(&m.config.model_type).ok_or_else(|| {
            Error::Invalid(format!(
                "GGUF export: architecture `{}` has no GGUF form here",
                m.config.model_type
            ))
        })?,
        Model::Gpt2(_) => &GPT2,
    };
    let arch_name = export_arch_name(arch);
    let heads = match &loaded.model {
        Model::Llama(m) => (m.config.num_attention_heads, m.config.kv_heads()),
        Model::Gpt2(m) => (m.config.n_head, m.config.n_head),
    };

    let weights = lora::adapter_weights(&loaded.model);
    let mut stems: Vec<&str> = weights
        .keys()
        .filter_map(|k| k.strip_suffix(".lora_a"))
        .collect();
    stems.sort();
    let mut tensors: Vec<(String, Array)> = Vec::new();
    for stem in &stems {
        let a = &weights[&format!("{stem}.lora_a")];
        let b = weights.get(&format!("{stem}.lora_b")).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: `{stem}` has lora_a but no lora_b",
                adapters.display()
            ))
        })?;
        let gname = match &loaded.model {
            Model::Gpt2(_) => gpt2_gguf_stem(stem).map(|(s, _)| format!("{s}.weight")),
            Model::Llama(_) => gguf_name(
                &format!("{stem}.weight"),
                arch.gemma,
                arch.fused_projections,
            ),
        }
        .ok_or_else(|| Error::Invalid(format!("GGUF export: `{stem}` has no llama.cpp name")))?;
        // mlx-lm keeps A as (in, r) and B as (r, out); PyTorch's (r, in) and
        // (out, r) are what llama.cpp reads.
        let (a, mut b) = (a.t(), b.t());
        if arch.gguf_permuted_qk {
            if gname.contains(".attn_q.") {
                b = permute_rows(&b, heads.0)?;
            } else if gname.contains(".attn_k.") {
                b = permute_rows(&b, heads.1)?;
            }
        }
        tensors.push((format!("{gname}.lora_a"), a));
        tensors.push((format!("{gname}.lora_b"), b));
    }
    if tensors.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no LoRA adapters to write",
            adapters.display()
        )));
    }

    let metadata = vec![
        (
            "general.architecture".to_string(),
            Value::String(arch_name.into()),
        ),
        ("general.type".into(), Value::String("adapter".into())),
        ("general.name".into(), Value::String(name.into())),
        ("adapter.type".into(), Value::String("lora".into())),
        ("adapter.lora.alpha".into(), Value::F32(config.alpha)),
        ("general.file_type".into(), Value::U32(0)),
        ("general.quantization_version".into(), Value::U32(2)),
    ];
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(n, t)| TensorSpec {
            name: n.clone(),
            dims: t.shape().iter().rev().map(|&d| d as u64).collect(),
            ggml_type: GgmlType::F32,
        })
        .collect();
    let fail = |e: String| Error::Invalid(format!("{}: {e}", path.display()));
    let mut writer = GgufWriter::create(path, &metadata, &specs, false).map_err(fail)?;
    for (_, t) in &tensors {
        let flat = t.as_dtype(mlx_rs::Dtype::Float32)?.reshape(&[-1])?;
        flat.eval()?;
        let bytes: Vec<u8> = flat
            .as_slice::<f32>()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        writer.write_data(&bytes).map_err(fail)?;
    }
    let path = writer.finish().map_err(fail)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(GgufLoraReport {
        path,
        bytes,
        projections: stems.len(),
        rank: config.rank,
        alpha: config.alpha,
    })
}

/// GPT-2 is not in the Llama family's table; its layout switches are off.
const GPT2: architecture::Architecture = architecture::Architecture {
    model_type: "gpt2",
    hf_class: "GPT2LMHeadModel",
    gguf: "gpt2",
    qk_norm: false,
    gemma: false,
    gguf_permuted_qk: false,
    fused_projections: false,
};
