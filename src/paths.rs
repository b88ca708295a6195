//! Where FineTune finds what it ships and what it downloads.
//!
//! A development build (from a clone) uses the clone's `.cache/`, where
//! `make setup` puts the default model and the sample dataset. An installed
//! package (`make dist` builds with `FINETUNE_DIST` set, so no path of the
//! build machine is compiled in) keeps nothing of the clone: the sample
//! dataset ships inside the package, the default model is downloaded on
//! first run into the standard Hugging Face cache, and runs live in the
//! platform's app-data folder (see [`crate::runs::runs_dir`]).

use std::path::PathBuf;

/// The default model on the Hugging Face hub (Apache-2.0, 135 M
/// parameters): what an installed app offers to download on first run.
pub const DEFAULT_MODEL_ID: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

/// The default model as `make setup` fetches it into a clone's cache.
const DEFAULT_MODEL_FILE: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Whether this binary was built for a package (`FINETUNE_DIST` set at
/// compile time).
pub fn is_packaged() -> bool {
    option_env!("FINETUNE_DIST").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The `.cache/` of the source tree a development build came from.
fn source_cache() -> Option<PathBuf> {
    (!is_packaged()).then(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache"))
}

/// The cache folder: `$FINETUNE_CACHE`; else, in a development build, the
/// clone's `.cache/`; else the platform's cache folder (`~/.cache/finetune`
/// on Linux, `~/Library/Caches/finetune` on macOS).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FINETUNE_CACHE")
        .map(PathBuf::from)
        .or_else(source_cache)
        .or_else(|| dirs::cache_dir().map(|d| d.join("finetune")))
        .unwrap_or_else(|| std::env::temp_dir().join("finetune-cache"))
}

/// What a package ships beside its binaries (the sample dataset):
/// `$FINETUNE_RESOURCES`, else `../lib/finetune` from the executable (the
/// `.deb` and the AppImage: `/usr/lib/finetune`), else `../Resources` (a
/// macOS `.app`). None when neither holds a `sample-data` folder (a
/// development build).
pub fn resources_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FINETUNE_RESOURCES") {
        return Some(dir.into());
    }
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    let bin = exe.parent()?;
    ["../lib/finetune", "../Resources"]
        .iter()
        .map(|rel| bin.join(rel))
        .find(|dir| dir.join("sample-data").is_dir())
}

/// The default model: the clone's Q4_1 GGUF where `make setup` put it (or
/// one placed in the cache folder); else the hub id, which loads from the
/// Hugging Face cache once downloaded.
pub fn default_model() -> PathBuf {
    let file = cache_dir().join(DEFAULT_MODEL_FILE);
    if file.exists() || !is_packaged() {
        return file;
    }
    PathBuf::from(DEFAULT_MODEL_ID)
}

/// The sample chat dataset (a folder with `train.jsonl` and `valid.jsonl`):
/// in the package's resources, else in the cache folder.
pub fn sample_dataset() -> PathBuf {
    resources_dir()
        .map(|dir| dir.join("sample-data/chitchat"))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| cache_dir().join("data/chitchat"))
}
