//! Writing a model as a Hugging Face folder: `config.json`, safetensors
//! (sharded by size, with `model.safetensors.index.json`), `tokenizer.json`
//! and `tokenizer_config.json` (with the chat template). Used to fuse
//! adapters into the base (`ft export --format fused`) and to convert any
//! supported input, a GGUF file included (`ft convert`).

pub mod check;
pub mod gguf;
pub mod gguf_lora;
mod gguf_vocab;
pub mod go_template;
pub mod job;
pub mod ollama;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use mlx_rs::Array;
use serde_json::json;

use crate::error::{Error, Result};
use crate::model::projection::Quantization;
use crate::model::{LoadedModel, Model};

/// Default largest shard, as transformers writes them.
pub const DEFAULT_SHARD_BYTES: usize = 5 << 30;

/// Folds every adapter into its base weight (the result is a dense model).
pub fn fuse_adapters(loaded: &mut LoadedModel) -> Result<()> {
    for projection in loaded.model.projections_mut() {
        if projection.has_lora() {
            projection.fuse_lora()?;
        }
    }
    Ok(())
}

/// Writes `loaded` into the new folder `dir` (refuses an existing one, so no
/// user file is ever overwritten). Quantized weights are written dense.
pub fn write_hf_folder(loaded: &mut LoadedModel, dir: &Path, shard_bytes: usize) -> Result<()> {
    loaded.model.dequantize()?;
    write_folder(loaded, dir, shard_bytes, None)
}

/// Quantizes every projection (embeddings and head included) of a Llama-
/// family model to `quantization` and writes it the way mlx-lm does:
/// packed `weight`, `scales` and `biases`, and a `quantization` entry in
/// config.json.
pub fn write_quantized_folder(
    loaded: &mut LoadedModel,
    dir: &Path,
    shard_bytes: usize,
    quantization: Quantization,
) -> Result<()> {
    if !matches!(loaded.model, Model::Llama(_)) {
        return Err(Error::Invalid(format!(
            "quantized folders are written for Llama-family models; this is {}",
            loaded.model.model_type()
        )));
    }
    if ![2, 3, 4, 6, 8].contains(&quantization.bits)
        || ![32, 64, 128].contains(&quantization.group_size)
    {
        return Err(Error::Invalid(format!(
            "cannot quantize to {} bits in groups of {} (bits: 2, 3, 4, 6, 8; group size: 32, 64, 128)",
            quantization.bits, quantization.group_size
        )));
    }
    loaded.model.dequantize()?;
    loaded.model.quantize(quantization)?;
    write_folder(loaded, dir, shard_bytes, Some(quantization))
}

fn write_folder(
    loaded: &mut LoadedModel,
    dir: &Path,
    shard_bytes: usize,
    quantization: Option<Quantization>,
) -> Result<()> {
    let staging = crate::files::Staging::new(dir)?;
    let tmp = staging.path();

    let params: HashMap<String, Array> = loaded.model.hf_tensors().into_iter().collect();
    let mut names: Vec<&str> = params.keys().map(String::as_str).collect();
    names.sort();
    // Greedy shards in name order.
    let mut shards: Vec<Vec<&str>> = vec![Vec::new()];
    let mut size = 0usize;
    for name in &names {
        let bytes = params[*name].nbytes();
        if size + bytes > shard_bytes && !shards.last().expect("non-empty").is_empty() {
            shards.push(Vec::new());
            size = 0;
        }
        shards.last_mut().expect("non-empty").push(name);
        size += bytes;
    }
    let mut weight_map = BTreeMap::new();
    let total = shards.len();
    for (i, shard) in shards.iter().enumerate() {
        let file = if total == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{total:05}.safetensors", i + 1)
        };
        let arrays: HashMap<&str, &Array> = shard.iter().map(|n| (*n, &params[*n])).collect();
        let path = tmp.join(&file);
        Array::save_safetensors(arrays, None, &path)
            .map_err(|e| Error::Invalid(format!("{}: cannot write: {e}", path.display())))?;
        for name in shard {
            weight_map.insert(name.to_string(), file.clone());
        }
    }
    if total > 1 {
        let total_size: usize = params.values().map(|a| a.nbytes()).sum();
        let index = json!({ "metadata": { "total_size": total_size }, "weight_map": weight_map });
        write_json(&tmp.join("model.safetensors.index.json"), &index)?;
    }

    let mut config_json = loaded.model.hf_config();
    config_json["torch_dtype"] = json!("float32");
    if let Some(q) = quantization {
        config_json["quantization"] = json!({ "group_size": q.group_size, "bits": q.bits });
    }
    write_json(&tmp.join("config.json"), &config_json)?;

    loaded.tokenizer.save(&tmp.join("tokenizer.json"))?;
    let mut tokenizer_config = json!({
        "bos_token": loaded.tokenizer.bos_token,
        "eos_token": loaded.tokenizer.eos_token,
    });
    if let Some(template) = &loaded.chat_template {
        tokenizer_config["chat_template"] = json!(template.source);
    }
    write_json(&tmp.join("tokenizer_config.json"), &tokenizer_config)?;
    staging.publish().map(|_| ())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })
}

/// The forms a run's adapters can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// mlx-lm: `adapters.safetensors` + `adapter_config.json`.
    Mlx,
    /// Hugging Face PEFT: `adapter_model.safetensors` + `adapter_config.json`.
    Peft,
    /// The base model with the adapters folded in, as a Hugging Face folder.
    Fused,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mlx => "mlx",
            Self::Peft => "peft",
            Self::Fused => "fused",
        }
    }
}

/// Writes a run's model (its base with the adapters fused in) as one GGUF
/// file of `file_type` at `output` (default: `<run>/export-gguf-<type>/
/// model-<type>.gguf`); refuses to overwrite anything there.
pub fn export_run_gguf(
    run: &crate::runs::Run,
    file_type: crate::gguf::mix::FileType,
    output: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<gguf::GgufReport> {
    let name = file_type.name().to_ascii_lowercase();
    let default = Path::new(&format!("export-gguf-{name}")).join(format!("model-{name}.gguf"));
    let (config, output) = gguf_output(run, output, &default)?;
    let loaded = load_fused(run, &config)?;
    let label = run_label(run, &config);
    gguf::write_gguf_with_progress(&loaded, &output, file_type, &label, progress)
}

/// Writes a run's model as an Ollama folder (default: `<run>/export-ollama-
/// <type>/`): the fused GGUF of `file_type` and a `Modelfile` whose
/// TEMPLATE is the run's chat template in Go-template form (checked to
/// render the same text), with a stop per end-of-turn token. Returns the
/// GGUF's report; the folder is its parent.
pub fn export_run_ollama(
    run: &crate::runs::Run,
    file_type: crate::gguf::mix::FileType,
    output: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<gguf::GgufReport> {
    let name = file_type.name().to_ascii_lowercase();
    let config = trained_config(run)?;
    let dir = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run.dir.join(format!("export-ollama-{name}")));
    if dir.exists() {
        return Err(Error::Invalid(format!(
            "{}: already exists; choose a new folder",
            dir.display()
        )));
    }
    let loaded = load_fused(run, &config)?;
    let chat = loaded.chat_template.as_ref().ok_or_else(|| {
        Error::Invalid(format!(
            "run {}: the model has no chat template for Ollama's TEMPLATE",
            run.id
        ))
    })?;
    // Translated before anything is written: a template Ollama cannot
    // reproduce stops the export here.
    let template = go_template::translate(chat, loaded.tokenizer.text_bos().is_some())?;
    let file = format!("model-{name}.gguf");
    let label = run_label(run, &config);
    let staging = crate::files::Staging::new(&dir)?;
    let mut report = gguf::write_gguf_with_progress(
        &loaded,
        &staging.path().join(&file),
        file_type,
        &label,
        progress,
    )?;
    ollama::write_modelfile(staging.path(), &format!("./{file}"), None, &template, &[])?;
    let dir = staging.publish()?;
    report.path = dir.join(file);
    Ok(report)
}

/// Writes a run's adapter alone as llama.cpp's LoRA GGUF (default:
/// `<run>/export-gguf-lora/adapter.gguf`), for the base the run trained on.
pub fn export_run_gguf_lora(
    run: &crate::runs::Run,
    output: Option<&Path>,
) -> Result<gguf_lora::GgufLoraReport> {
    let default = Path::new("export-gguf-lora").join("adapter.gguf");
    let (config, output) = gguf_output(run, output, &default)?;
    let mut loaded = crate::model::load(&config.model, &Default::default())?;
    let label = format!(
        "{} LoRA (FineTune run {})",
        model_label(&config.model),
        run.id
    );
    gguf_lora::write_gguf_lora(&mut loaded, &run.adapters_dir(), &output, &label)
}

/// The run's base with its adapters fused in, dense, carrying the chat
/// template the run trained with (which may be a built-in or a file rather
/// than the model's own): what a fused export writes.
fn load_fused(run: &crate::runs::Run, config: &crate::train::TrainConfig) -> Result<LoadedModel> {
    let options = crate::model::LoadOptions {
        dequantize: true,
        ..Default::default()
    };
    let mut loaded = crate::model::load(&config.model, &options)?;
    crate::lora::load_adapters(&mut loaded.model, &run.adapters_dir())?;
    fuse_adapters(&mut loaded)?;
    carry_run_template(&mut loaded, config)?;
    Ok(loaded)
}

/// Gives `loaded` the chat template the run trained with (its `template`
/// setting, else the model's own, else the tokenizer's guess), so that an
/// export speaks the way the run was trained.
fn carry_run_template(loaded: &mut LoadedModel, config: &crate::train::TrainConfig) -> Result<()> {
    let resolved = crate::data::templates::resolve(
        config.template.as_deref(),
        loaded.chat_template.as_ref(),
        &loaded.tokenizer,
    )?;
    loaded.chat_template = Some(resolved.template);
    Ok(())
}

/// The run's config and the GGUF file to write (`output`, else `default`
/// inside the run), once the run has adapters and the file is new; its
/// folder is made.
fn gguf_output(
    run: &crate::runs::Run,
    output: Option<&Path>,
    default: &Path,
) -> Result<(crate::train::TrainConfig, std::path::PathBuf)> {
    let config = trained_config(run)?;
    let output = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run.dir.join(default));
    if output.exists() {
        return Err(Error::Invalid(format!(
            "{}: already exists; choose a new file",
            output.display()
        )));
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            path: parent.into(),
            source,
        })?;
    }
    Ok((config, output))
}

/// `general.name` of a run's GGUF.
fn run_label(run: &crate::runs::Run, config: &crate::train::TrainConfig) -> String {
    format!("{} (FineTune run {})", model_label(&config.model), run.id)
}

/// The exact size of the GGUF `ft export --format gguf` (or ollama) would
/// write for `run` as each of `file_types`, before anything is written.
pub fn run_gguf_sizes(
    run: &crate::runs::Run,
    file_types: &[crate::gguf::mix::FileType],
) -> Result<Vec<(crate::gguf::mix::FileType, u64)>> {
    let config = trained_config(run)?;
    // The adapters fold into the weights without changing a shape, so the
    // base with the run's template is enough.
    let options = crate::model::LoadOptions {
        dequantize: true,
        ..Default::default()
    };
    let mut loaded = crate::model::load(&config.model, &options)?;
    carry_run_template(&mut loaded, &config)?;
    gguf::planned_sizes(&loaded, &run_label(run, &config), file_types)
}

/// The run's config, once it has adapters to export.
fn trained_config(run: &crate::runs::Run) -> Result<crate::train::TrainConfig> {
    let config = run.read_config()?;
    if !run.adapters_dir().join("adapter_config.json").exists() {
        return Err(Error::Invalid(format!(
            "run {}: no adapters yet (it has not finished or saved a step)",
            run.id
        )));
    }
    Ok(config)
}

/// A model's name for `general.name`: its file or folder name.
pub fn model_label(model: &Path) -> String {
    model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// Writes a run's adapters in `format` to `output` (default:
/// `<run>/export-<format>`); refuses to overwrite anything there.
pub fn export_run(
    run: &crate::runs::Run,
    format: ExportFormat,
    output: Option<&Path>,
) -> Result<std::path::PathBuf> {
    let config = trained_config(run)?;
    let adapters = run.adapters_dir();
    let output = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run.dir.join(format!("export-{}", format.name())));
    if output.exists() {
        return Err(Error::Invalid(format!(
            "{}: already exists; choose a new folder",
            output.display()
        )));
    }
    match format {
        ExportFormat::Mlx => {
            let staging = crate::files::Staging::new(&output)?;
            for file in ["adapters.safetensors", "adapter_config.json"] {
                let to = staging.path().join(file);
                std::fs::copy(adapters.join(file), &to)
                    .map_err(|source| Error::Io { path: to, source })?;
            }
            staging.publish()?;
        }
        ExportFormat::Peft => {
            let staging = crate::files::Staging::new(&output)?;
            let base = config.model.display().to_string();
            crate::peft::mlx_to_peft(&adapters, staging.path(), &base)?;
            staging.publish()?;
        }
        ExportFormat::Fused => {
            let mut loaded = load_fused(run, &config)?;
            write_hf_folder(&mut loaded, &output, DEFAULT_SHARD_BYTES)?;
        }
    }
    Ok(output)
}
