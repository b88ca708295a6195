//! Checkpoints for exact resume: adapter weights, optimizer moments, and the
//! loop's counters. The data order is a pure function of the seed and the
//! epoch, so the step number alone says where in the data a run was.
//!
//! Each checkpoint is written into a temporary folder that is renamed into
//! place, then `latest` is replaced atomically: a crash at any moment leaves
//! the previous checkpoint intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::Array;
use serde::{Deserialize, Serialize};

use super::optimizer::TrainOptimizer;
use crate::error::{Error, Result};
use crate::files::{load_arrays, write_atomic};
use crate::lora;
use crate::model::Model;

/// How many checkpoints to keep (the newest ones).
const KEEP: usize = 2;

/// The loop's counters at the end of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Steps completed.
    pub step: usize,
    pub trained_tokens: usize,
    pub best_val_loss: Option<f32>,
    /// Evaluations since the best one (for early stopping).
    #[serde(default)]
    pub evals_since_best: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

/// Writes a checkpoint under `root`; returns its folder.
pub fn save(
    root: &Path,
    model: &Model,
    optimizer: &mut TrainOptimizer,
    state: &LoopState,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).map_err(io(root))?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!("{name}.tmp"));
    let dir = root.join(&name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;

    save_arrays(
        &lora::adapter_weights(model),
        &tmp.join("adapters.safetensors"),
    )?;
    optimizer.save(&tmp.join("optimizer.safetensors"))?;
    let json = serde_json::to_string_pretty(state).expect("serializable");
    std::fs::write(tmp.join("state.json"), json).map_err(io(&tmp))?;

    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    write_atomic(&root.join("latest"), name.as_bytes())?;
    prune(root)?;
    Ok(dir)
}

fn save_arrays(arrays: &HashMap<String, Array>, path: &Path) -> Result<()> {
    Array::save_safetensors(arrays, None, path)
        .map_err(|e| Error::Invalid(format!("{}: cannot write: {e}", path.display())))
}

fn prune(root: &Path) -> Result<()> {
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(io(root))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-") && !n.ends_with(".tmp"))
        })
        .collect();
    steps.sort();
    for old in steps.iter().rev().skip(KEEP) {
        std::fs::remove_dir_all(old).map_err(io(old))?;
    }
    Ok(())
}

/// The newest complete checkpoint under `root`, if any.
pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    let pointer = root.join("latest");
    match std::fs::read_to_string(&pointer) {
        Ok(name) => {
            let dir = root.join(name.trim());
            if dir.join("state.json").exists() {
                Ok(Some(dir))
            } else {
                Err(Error::Invalid(format!(
                    "{}: points at a missing checkpoint",
                    pointer.display()
                )))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: pointer,
            source,
        }),
    }
}

/// Loads a checkpoint into `model` (its adapters) and `optimizer`.
pub fn restore(dir: &Path, model: &mut Model, optimizer: &mut TrainOptimizer) -> Result<LoopState> {
    let adapters = dir.join("adapters.safetensors");
    lora::set_adapter_weights(model, load_arrays(&adapters)?, &adapters)?;
    optimizer.load(&dir.join("optimizer.safetensors"), model)?;
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}
