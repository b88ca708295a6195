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

/// The default model and sample dataset `make setup` fetched.
#[tauri::command]
pub fn default_files() -> Vec<DefaultFile> {
    vec![
        DefaultFile::probe("Model", &finetune::paths::default_model()),
        DefaultFile::probe("Dataset", &finetune::paths::sample_dataset()),
    ]
}
