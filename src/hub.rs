//! Models by Hugging Face Hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`),
//! downloaded with `hf-hub` into the standard Hugging Face cache
//! (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`)
//! that Python's `huggingface_hub` and transformers share. Downloads resume
//! from their partial file. A model whose files are all in the cache is used
//! without touching the network; with `HF_HUB_OFFLINE=1` the network is
//! never used.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};

/// What a download reports as it goes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DownloadEvent {
    /// A file starts downloading: its name and size in bytes.
    Started { file: String, bytes: u64 },
    /// More bytes of the current file arrived.
    Progress { bytes: u64 },
    /// The current file is complete.
    Finished { file: String },
}

/// Whether `spec` reads as a hub id (`owner/name`) rather than a path. A
/// local file or folder of that name always wins.
pub fn is_hub_id(spec: &str) -> bool {
    let Some((owner, name)) = spec.split_once('/') else {
        return false;
    };
    let valid = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    valid(owner) && valid(name) && !Path::new(spec).exists()
}

/// The hub cache folder, as Python's huggingface_hub picks it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return dir.into();
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    dirs::home_dir()
        .unwrap_or_default()
        .join(".cache/huggingface/hub")
}

/// `HF_HUB_OFFLINE` set to 1 / true / yes / on.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// Files a model folder needs besides its weights (the first is required).
const MODEL_FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
];

/// Weight layouts, in order of preference: (index, single file).
const WEIGHTS: &[(&str, &str)] = &[
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
];

/// The local snapshot folder of hub model `id`, downloading what is missing
/// unless offline.
pub fn resolve(id: &str, mut on_event: impl FnMut(DownloadEvent)) -> Result<PathBuf> {
    let cache = Cache::new(cache_dir());
    if let Some(dir) = cached_snapshot(&cache, id)? {
        return Ok(dir);
    }
    if offline() {
        return Err(Error::Invalid(format!(
            "{id}: not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set; \
             download it once while online (ft models pull {id})",
            cache.path().display()
        )));
    }
    download(&cache, id, &mut on_event)
}

/// The local snapshot folder of hub model `id` when every file it needs is
/// in the cache (never touches the network).
pub fn cached(id: &str) -> Option<PathBuf> {
    cached_snapshot(&Cache::new(cache_dir()), id).ok().flatten()
}

/// The snapshot folder if config.json, tokenizer.json and every weight file
/// are cached.
fn cached_snapshot(cache: &Cache, id: &str) -> Result<Option<PathBuf>> {
    let repo = cache.repo(Repo::new(id.to_string(), RepoType::Model));
    let (Some(config), Some(_)) = (repo.get("config.json"), repo.get("tokenizer.json")) else {
        return Ok(None);
    };
    let dir = config.parent().expect("a file in a snapshot").to_path_buf();
    for (index, single) in WEIGHTS {
        if let Some(index_path) = repo.get(index) {
            let shards = shard_names(&index_path)?;
            return Ok(shards.iter().all(|s| repo.get(s).is_some()).then_some(dir));
        }
        if repo.get(single).is_some() {
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|source| Error::Io {
        path: index.into(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: not valid JSON: {e}", index.display())))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Invalid(format!("{}: no `weight_map` object", index.display())))?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

struct Reporter<'a> {
    file: String,
    on_event: &'a mut dyn FnMut(DownloadEvent),
}

impl hf_hub::api::Progress for Reporter<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        self.file = filename.to_string();
        (self.on_event)(DownloadEvent::Started {
            file: filename.to_string(),
            bytes: size as u64,
        });
    }
    fn update(&mut self, size: usize) {
        (self.on_event)(DownloadEvent::Progress { bytes: size as u64 });
    }
    fn finish(&mut self) {
        (self.on_event)(DownloadEvent::Finished {
            file: self.file.clone(),
        });
    }
}

fn download(cache: &Cache, id: &str, on_event: &mut dyn FnMut(DownloadEvent)) -> Result<PathBuf> {
    let hub_error = |what: &str, e: hf_hub::api::sync::ApiError| {
        Error::Invalid(format!(
            "{id}: {what} from the Hugging Face Hub failed: {e}"
        ))
    };
    let api = ApiBuilder::from_cache(cache.clone())
        .with_progress(false)
        .with_retries(3)
        .build()
        .map_err(|e| hub_error("connecting", e))?;
    let repo = api.model(id.to_string());
    let info = repo.info().map_err(|e| hub_error("listing the files", e))?;
    let available: Vec<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    if !available.contains(&"config.json") {
        return Err(Error::Invalid(format!(
            "{id}: the repository has no config.json, so it is not a transformers model"
        )));
    }
    let mut wanted: Vec<String> = MODEL_FILES
        .iter()
        .filter(|f| available.contains(f))
        .map(|f| f.to_string())
        .collect();
    let layout = WEIGHTS
        .iter()
        .find(|(index, single)| available.contains(index) || available.contains(single))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{id}: no safetensors or pytorch_model.bin weights in the repository"
            ))
        })?;
    let fetch = |file: &str, on_event: &mut dyn FnMut(DownloadEvent)| -> Result<PathBuf> {
        let cached = cache
            .repo(Repo::new(id.to_string(), RepoType::Model))
            .get(file);
        match cached {
            Some(path) => Ok(path),
            None => repo
                .download_with_progress(
                    file,
                    Reporter {
                        file: file.to_string(),
                        on_event,
                    },
                )
                .map_err(|e| hub_error(&format!("downloading {file}"), e)),
        }
    };
    if available.contains(&layout.0) {
        let index = fetch(layout.0, on_event)?;
        wanted.extend(shard_names(&index)?);
    } else {
        wanted.push(layout.1.to_string());
    }
    let mut config_path = None;
    for file in &wanted {
        let path = fetch(file, on_event)?;
        if file == "config.json" {
            config_path = Some(path);
        }
    }
    let config_path = config_path.expect("config.json is always wanted");
    Ok(config_path
        .parent()
        .expect("a file in a snapshot")
        .to_path_buf())
}

/// Hub models in the cache: (id, snapshot folder) for each `models--*`.
pub fn cached_models() -> Vec<(String, PathBuf)> {
    let cache = Cache::new(cache_dir());
    let Ok(entries) = std::fs::read_dir(cache.path()) else {
        return Vec::new();
    };
    let mut models: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("models--")?.replacen("--", "/", 1);
            let dir = cached_snapshot(&cache, &id).ok()??;
            Some((id, dir))
        })
        .collect();
    models.sort();
    models
}
