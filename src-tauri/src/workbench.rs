//! What the window shows before training: the model's facts, a dataset's
//! statistics, errors and preview, and the templates to choose from. Each
//! loads real files with the engine, off the main thread.

use std::path::PathBuf;

use finetune::data::{
    preview, templates, DatasetStats, MaskPolicy, OnBadRecord, ReadOptions, Skipped, Tokenization,
};
use finetune::hub::DownloadEvent;
use finetune::model::{self, LoadOptions};
use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;

use crate::error::CommandError;

/// Runs `work` on a worker thread: commands that read files or models must
/// not hold up the window.
pub(crate) async fn background<T: Send + 'static>(
    work: impl FnOnce() -> finetune::Result<T> + Send + 'static,
) -> Result<T, CommandError> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|e| CommandError::Background(e.to_string()))?
        .map_err(CommandError::from)
}

fn model_path(path: Option<PathBuf>) -> PathBuf {
    let path = path.unwrap_or_else(finetune::paths::default_model);
    // A hub id already downloaded: its snapshot folder in the HF cache, so
    // the panel names (and measures) the files on disk.
    if !path.exists() {
        if let Some(dir) = path.to_str().and_then(finetune::hub::cached) {
            return dir;
        }
    }
    path
}

/// A model's facts, as the Model panel shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub path: String,
    pub architecture: String,
    pub layers: usize,
    pub hidden_size: i32,
    pub vocab_size: i32,
    pub parameters: usize,
    /// Bits of the quantized weights as stored (None: dense).
    pub quantized_bits: Option<i32>,
    pub bytes_on_disk: u64,
    pub chat_template: bool,
    /// A GGUF file's tensor types (llama.cpp's names) and their counts.
    #[serde(default)]
    pub tensor_types: Option<std::collections::BTreeMap<String, usize>>,
}

fn size_on_disk(path: &std::path::Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| size_on_disk(&e.path())).sum())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Loads a model (the bundled one when `path` is None) and describes it.
#[tauri::command]
pub async fn model_info(path: Option<PathBuf>) -> Result<ModelInfo, CommandError> {
    background(move || {
        let path = model_path(path);
        // A GGUF's header first: an unsupported file is refused before
        // its tensors are read.
        let gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            .then(|| model::gguf::describe(&path))
            .transpose()?;
        if let Some(why) = gguf.as_ref().and_then(|g| g.unsupported.clone()) {
            return Err(finetune::Error::Invalid(why));
        }
        let loaded = model::load(&path, &LoadOptions::default())?;
        let m = &loaded.model;
        Ok(ModelInfo {
            path: path.display().to_string(),
            architecture: m.model_type().to_string(),
            layers: m.num_layers(),
            hidden_size: m.hidden_size(),
            vocab_size: m.vocab_size(),
            parameters: m.parameter_count(),
            quantized_bits: m.quantization().map(|q| q.bits),
            bytes_on_disk: size_on_disk(&path),
            chat_template: loaded.chat_template.is_some(),
            tensor_types: gguf.map(|g| g.tensor_types),
        })
    })
    .await
}

/// The local folder of hub model `id`, downloading what the Hugging Face
/// cache lacks; `on_progress` receives each file's start, bytes and end.
/// A cached model answers at once, without the network.
#[tauri::command]
pub async fn download_model(
    id: String,
    on_progress: Channel<DownloadEvent>,
) -> Result<String, CommandError> {
    // A local folder of that name wins, as everywhere else.
    if std::path::Path::new(&id).exists() {
        return Ok(id);
    }
    if !finetune::hub::is_hub_id(&id) {
        return Err(CommandError::from(finetune::Error::Invalid(format!(
            "`{id}` is not a hub id (owner/name)"
        ))));
    }
    background(move || {
        let dir = finetune::hub::resolve(&id, |event| {
            let _ = on_progress.send(event);
        })?;
        Ok(dir.display().to_string())
    })
    .await
}

/// A built-in template for the picker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemplateChoice {
    pub name: String,
}

#[tauri::command]
pub fn list_templates() -> Vec<TemplateChoice> {
    templates::names()
        .into_iter()
        .map(|n| TemplateChoice { name: n.into() })
        .collect()
}

/// What the Dataset and Template panels ask for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectRequest {
    pub data: Option<PathBuf>,
    pub model: Option<PathBuf>,
    pub template: Option<String>,
    pub mask: Option<MaskPolicy>,
    pub max_length: usize,
    /// Leave out unreadable records (listing them) instead of failing.
    pub skip_bad_records: bool,
    /// How many records to render for the preview.
    pub preview: usize,
}

/// A dataset as training will see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetReport {
    pub file: String,
    /// The validation file found beside it, if any.
    pub valid_file: Option<String>,
    pub stats: DatasetStats,
    /// Preference pairs (0 for other data); `previews` then alternate
    /// chosen and rejected, pair by pair.
    pub pairs: usize,
    pub chosen_stats: Option<DatasetStats>,
    pub rejected_stats: Option<DatasetStats>,
    /// Prompt-only data (for GRPO): the prompts (0 for other data; `stats`
    /// then counts the prompts' tokens), how many carry a reference
    /// answer, and each previewed prompt's answer.
    #[serde(default)]
    pub prompts: usize,
    #[serde(default)]
    pub prompt_answers: usize,
    #[serde(default)]
    pub answers: Vec<Option<String>>,
    /// Prompt-only data: prompts longer than the maximum length (left out).
    #[serde(default)]
    pub too_long: usize,
    pub chat_records: usize,
    pub skipped_empty: usize,
    pub skipped: Vec<Skipped>,
    pub template: String,
    pub warnings: Vec<String>,
    /// Per previewed record: its text in runs, `true` where trained.
    pub previews: Vec<Vec<(String, bool)>>,
}

#[tauri::command]
pub async fn inspect_dataset(request: InspectRequest) -> Result<DatasetReport, CommandError> {
    background(move || {
        let data = request
            .data
            .clone()
            .unwrap_or_else(finetune::paths::sample_dataset);
        let loaded = model::load(&model_path(request.model.clone()), &LoadOptions::default())?;
        let template = templates::resolve(
            request.template.as_deref(),
            loaded.chat_template.as_ref(),
            &loaded.tokenizer,
        )?;
        let tokenization = Tokenization {
            template: Some(&template.template),
            tokenizer: &loaded.tokenizer,
            policy: request.mask.unwrap_or_default(),
            max_length: request.max_length.max(2),
        };
        let read = ReadOptions {
            on_bad_record: if request.skip_bad_records {
                OnBadRecord::Skip
            } else {
                OnBadRecord::Error
            },
            ..Default::default()
        };
        if finetune::data::prompts::is_prompt_data(&data, &read) {
            return prompt_report(&data, &read, &template, &loaded.tokenizer, &request);
        }
        let cache = finetune::paths::cache_dir().join("tokenized");
        let file = tokenization.file(&data, &read, Some(&cache))?;
        let per_record = if file.pairs > 0 { 2 } else { 1 };
        let previews = file
            .examples
            .iter()
            .take(request.preview * per_record)
            .map(|e| preview(&e, &loaded.tokenizer))
            .collect::<finetune::Result<Vec<_>>>()?;
        let valid_file = finetune::data::valid_file(&data);
        Ok(DatasetReport {
            file: file.source.display().to_string(),
            valid_file: valid_file.map(|p| p.display().to_string()),
            stats: DatasetStats::of(&file.examples),
            pairs: file.pairs,
            chosen_stats: (file.pairs > 0)
                .then(|| DatasetStats::of(&finetune::data::Side(&file.examples, 0))),
            rejected_stats: (file.pairs > 0)
                .then(|| DatasetStats::of(&finetune::data::Side(&file.examples, 1))),
            prompts: 0,
            prompt_answers: 0,
            answers: Vec::new(),
            too_long: 0,
            chat_records: file.chat_records,
            skipped_empty: file.skipped_empty,
            skipped: file.skipped,
            template: template.name,
            warnings: if file.chat_records > 0 {
                template.warnings
            } else {
                Vec::new()
            },
            previews,
        })
    })
    .await
}

/// The report on prompt-only data: the prompts as the model continues
/// them (nothing trained: GRPO samples the completions), with their answers.
fn prompt_report(
    data: &std::path::Path,
    read: &ReadOptions,
    template: &templates::Resolved,
    tokenizer: &finetune::tokenizer::Tokenizer,
    request: &InspectRequest,
) -> finetune::Result<DatasetReport> {
    let set = finetune::data::prompts::read_prompts(
        data,
        read,
        &template.template,
        tokenizer,
        request.max_length.max(2),
    )?;
    let shown = &set.prompts[..request.preview.min(set.prompts.len())];
    let previews = shown
        .iter()
        .map(|p| Ok(vec![(tokenizer.decode_with_special(&p.tokens)?, false)]))
        .collect::<finetune::Result<Vec<_>>>()?;
    Ok(DatasetReport {
        file: set.source.display().to_string(),
        valid_file: finetune::data::valid_file(data).map(|p| p.display().to_string()),
        stats: DatasetStats::of(&set),
        pairs: 0,
        chosen_stats: None,
        rejected_stats: None,
        prompts: set.prompts.len(),
        prompt_answers: set.with_answer(),
        answers: shown.iter().map(|p| p.answer.clone()).collect(),
        too_long: set.too_long,
        // Every prompt goes through the chat template.
        chat_records: set.prompts.len(),
        skipped_empty: 0,
        skipped: set.skipped,
        template: template.name.clone(),
        warnings: template.warnings.clone(),
        previews,
    })
}

/// What a dropped path is: a model (`.gguf`, or a folder with config.json),
/// a dataset (a data file, or a folder with a train file), or neither.
#[tauri::command]
pub fn classify_path(path: PathBuf) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "gguf" || path.join("config.json").is_file() {
        "model"
    } else if (path.is_file() && finetune::data::formats::Format::of(&path).is_ok())
        || (path.is_dir() && finetune::data::split_file(&path, "train").is_some())
    {
        "dataset"
    } else {
        "unknown"
    }
}
