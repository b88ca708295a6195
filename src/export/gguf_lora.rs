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
    let arch_name = export_arch_name(architecture_of(&loaded.model)?);
    let weights = lora::adapter_weights(&loaded.model);
    let mut tensors: Vec<(String, Array)> = Vec::new();
    let slots = lora_slots(&loaded.model, &weights, adapters)?;
    for slot in &slots {
        // mlx-lm keeps A as (in, r) and B as (r, out); PyTorch's (r, in) and
        // (out, r) are what llama.cpp reads.
        let a = weights[&format!("{}.lora_a", slot.stem)].t();
        let mut b = weights[&format!("{}.lora_b", slot.stem)].t();
        if let Some(heads) = slot.permuted_heads {
            b = permute_rows(&b, heads)?;
        }
        tensors.push((format!("{}.lora_a", slot.gguf), a));
        tensors.push((format!("{}.lora_b", slot.gguf), b));
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
        projections: slots.len(),
        rank: config.rank,
        alpha: config.alpha,
    })
}

/// One adapted projection: its adapter's parameter stem (mlx-lm's name
/// without `.lora_a`), its llama.cpp tensor name, and the head count its
/// output rows are permuted by (Llama's q/k), if any.
struct LoraSlot {
    stem: String,
    gguf: String,
    permuted_heads: Option<i32>,
}

fn architecture_of(model: &Model) -> Result<&'static architecture::Architecture> {
    match model {
        Model::Llama(m) => architecture::by_model_type(&m.config.model_type).ok_or_else(|| {
            Error::Invalid(format!(
                "GGUF export: architecture `{}` has no GGUF form here",
                m.config.model_type
            ))
        }),
        Model::Gpt2(_) => Ok(&GPT2),
    }
}

/// The llama.cpp names of the adapted projections in `weights` (the model's
/// adapter parameters), in name order; `source` names the adapters in errors.
fn lora_slots(
    model: &Model,
    weights: &std::collections::HashMap<String, Array>,
    source: &Path,
) -> Result<Vec<LoraSlot>> {
    let arch = architecture_of(model)?;
    let heads = match model {
        Model::Llama(m) => (m.config.num_attention_heads, m.config.kv_heads()),
        Model::Gpt2(m) => (m.config.n_head, m.config.n_head),
    };
    let mut stems: Vec<&str> = weights
        .keys()
        .filter_map(|k| k.strip_suffix(".lora_a"))
        .collect();
    stems.sort();
    stems
        .into_iter()
        .map(|stem| {
            if !weights.contains_key(&format!("{stem}.lora_b")) {
                return Err(Error::Invalid(format!(
                    "{}: `{stem}` has lora_a but no lora_b",
                    source.display()
                )));
            }
            let gguf = match model {
                Model::Gpt2(_) => gpt2_gguf_stem(stem).map(|(s, _)| format!("{s}.weight")),
                Model::Llama(_) => gguf_name(
                    &format!("{stem}.weight"),
                    arch.gemma,
                    arch.fused_projections,
                ),
            }
            .ok_or_else(|| {
                Error::Invalid(format!("GGUF export: `{stem}` has no llama.cpp name"))
            })?;
            let permuted_heads = if !arch.gguf_permuted_qk {
                None
            } else if gguf.contains(".attn_q.") {
                Some(heads.0)
            } else if gguf.contains(".attn_k.") {
                Some(heads.1)
            } else {
                None
            };
            Ok(LoraSlot {
                stem: stem.to_string(),
                gguf,
                permuted_heads,
            })
        })
        .collect()
}

/// Attaches the LoRA GGUF `file` to `loaded` (its base), the reverse of
/// [`write_gguf_lora`]: the adapter settings (rank, targets, layers) come
/// from the run's `adapters` folder, every weight from the GGUF, which must
/// hold exactly one lora_a / lora_b pair per adapted projection and the
/// run's alpha. Used by the export check to load what was written.
pub fn read_gguf_lora(loaded: &mut LoadedModel, adapters: &Path, file: &Path) -> Result<()> {
    let config: LoraConfig = lora::load_adapters(&mut loaded.model, adapters)?;
    let gguf = crate::gguf::GgufFile::open(file)?;
    let bad = |what: String| Error::Invalid(format!("{}: {what}", file.display()));
    if gguf.get_str("general.type")? != Some("adapter")
        || gguf.get_str("adapter.type")? != Some("lora")
    {
        return Err(bad(
            "not a LoRA adapter GGUF (general.type, adapter.type)".into()
        ));
    }
    let alpha = gguf
        .get_f32("adapter.lora.alpha")?
        .ok_or_else(|| bad("no adapter.lora.alpha".into()))?;
    if (alpha - config.alpha).abs() > 1e-6 * config.alpha.abs().max(1.0) {
        return Err(bad(format!(
            "adapter.lora.alpha is {alpha}; the run trained with {}",
            config.alpha
        )));
    }
    let weights = lora::adapter_weights(&loaded.model);
    let slots = lora_slots(&loaded.model, &weights, adapters)?;
    let read = |name: &str, like: &Array| -> Result<Array> {
        let info = gguf
            .tensor(name)
            .ok_or_else(|| bad(format!("no tensor `{name}`")))?;
        let shape = info.shape();
        let mut want = like.shape().to_vec();
        want.reverse();
        if shape != want {
            return Err(bad(format!(
                "`{name}` has shape {shape:?}, the adapter needs {want:?}"
            )));
        }
        Ok(Array::from_slice(&gguf.dequantize(info)?, &shape))
    };
    let mut restored = std::collections::HashMap::new();
    for slot in &slots {
        let (a_key, b_key) = (
            format!("{}.lora_a", slot.stem),
            format!("{}.lora_b", slot.stem),
        );
        let a = read(&format!("{}.lora_a", slot.gguf), &weights[&a_key])?;
        let mut b = read(&format!("{}.lora_b", slot.gguf), &weights[&b_key])?;
        if let Some(heads) = slot.permuted_heads {
            b = crate::model::gguf::unpermute_rows(&b, heads)?;
        }
        restored.insert(a_key, a.t());
        restored.insert(b_key, b.t());
    }
    let extra = gguf.tensors().len() as i64 - 2 * slots.len() as i64;
    if extra != 0 {
        return Err(bad(format!(
            "holds {} tensors; the run's adapter has {}",
            gguf.tensors().len(),
            2 * slots.len()
        )));
    }
    lora::set_adapter_weights(&mut loaded.model, restored, file)
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
