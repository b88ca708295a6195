//! Where FineTune keeps what setup downloads: the default model and the
//! sample dataset, under one cache folder.

use std::path::PathBuf;

/// The cache folder: `$FINETUNE_CACHE`, else `.cache/` in the source tree
/// this binary was built from (where `make setup` puts everything).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FINETUNE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache"))
}

/// The bundled default model: SmolLM2-135M-Instruct as a Q4_1 GGUF.
pub fn default_model() -> PathBuf {
    cache_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The sample chat dataset (a folder with `train.jsonl` and `valid.jsonl`).
pub fn sample_dataset() -> PathBuf {
    cache_dir().join("data/chitchat")
}
