//! The commands the UI calls. Generic over `Runtime` so the mock runtime
//! can drive them in tests.

use std::path::Path;

use finetune::device::DeviceReport;
use serde::{Deserialize, Serialize};

use crate::error::CommandError;

/// Measures the machine (about half a second of MLX work, so off the main
/// thread).
#[tauri::command]
pub async fn device_report() -> Result<DeviceReport, CommandError> {
    tauri::async_runtime::spawn_blocking(DeviceReport::collect)
        .await
        .map_err(|e| CommandError::Background(e.to_string()))?
        .map_err(CommandError::from)
}

/// A file the app starts with, as found on disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DefaultFile {
    pub label: String,
    pub path: String,
    pub present: bool,
    pub size_bytes: Option<u64>,
    /// The hub id this file is (or would be, once downloaded) a snapshot of.
    #[serde(default)]
    pub hub_id: Option<String>,
}

impl DefaultFile {
    fn probe(label: &str, path: &Path) -> Self {
        let size_bytes = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => Some(meta.len()),
            Ok(_) => dir_size(path),
            Err(_) => None,
        };
        Self {
            label: label.into(),
            path: path.display().to_string(),
            present: size_bytes.is_some(),
            size_bytes,
            hub_id: None,
        }
    }
}

fn dir_size(dir: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum(),
    )
}

/// The default model and the sample dataset: in a clone what `make setup`
/// fetched; in an installed app the dataset it ships and the default model
/// from the Hugging Face cache, or, before its download, the hub id to
/// offer (`hub_id`, with `present: false`).
#[tauri::command]
pub fn default_files() -> Vec<DefaultFile> {
    use finetune::paths;
    let model = paths::default_model();
    let model = if model.exists() {
        DefaultFile::probe("Model", &model)
    } else if let Some(snapshot) = finetune::hub::cached(paths::DEFAULT_MODEL_ID) {
        DefaultFile {
            hub_id: Some(paths::DEFAULT_MODEL_ID.into()),
            ..DefaultFile::probe("Model", &snapshot)
        }
    } else {
        DefaultFile {
            hub_id: paths::is_packaged().then(|| paths::DEFAULT_MODEL_ID.into()),
            ..DefaultFile::probe("Model", &model)
        }
    };
    vec![
        model,
        DefaultFile::probe("Dataset", &paths::sample_dataset()),
    ]
}

/// The versions the About line shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Versions {
    pub app: String,
    pub mlx: String,
}

#[tauri::command]
pub fn versions() -> Result<Versions, CommandError> {
    Ok(Versions {
        app: env!("CARGO_PKG_VERSION").into(),
        mlx: finetune::device::mlx_version()?,
    })
}
