//! Checkpoints for exact resume: adapter weights, optimizer moments, and the
//! loop's counters. The data order is a pure function of the seed and the
//! epoch, so the step number alone says where in the data a run was.
//!
//! Each checkpoint is written into a temporary folder of its own, every
//! file fsynced, renamed into place, then `latest` is replaced atomically,
//! and only then are older checkpoints removed: a crash (or a kill) at any
//! moment leaves a complete newest checkpoint. Only the process holding the
//! run's lock writes here, so temporary folders found here are a dead
//! writer's and are removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::Array;
use serde::{Deserialize, Serialize};

use super::optimizer::TrainOptimizer;
use crate::error::{Error, Result};
use crate::files::{self, load_arrays, write_atomic};
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
    /// How many processes trained the session that wrote it (1 for
    /// checkpoints from before data parallel training).
    #[serde(default = "one_rank")]
    pub ranks: usize,
}

fn one_rank() -> usize {
    1
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
    let dir = root.join(&name);
    // A checkpoint of this step is already there (a stop right after a
    // periodic checkpoint): the same step is the same state.
    if !dir.join(STATE).exists() {
        let tmp = files::temp_sibling(&dir, "");
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        let written =
            write_contents(&tmp, model, optimizer, state).and_then(|()| publish(&tmp, &dir, root));
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        written?;
    }
    write_atomic(&root.join("latest"), name.as_bytes())?;
    prune(root)?;
    Ok(dir)
}

/// The file whose presence marks a complete checkpoint (written last).
const STATE: &str = "state.json";

fn write_contents(
    tmp: &Path,
    model: &Model,
    optimizer: &mut TrainOptimizer,
    state: &LoopState,
) -> Result<()> {
    save_arrays(
        &lora::adapter_weights(model),
        &tmp.join("adapters.safetensors"),
    )?;
    optimizer.save(&tmp.join("optimizer.safetensors"))?;
    let json = serde_json::to_string_pretty(state).expect("serializable");
    std::fs::write(tmp.join(STATE), json).map_err(io(tmp))?;
    for file in ["adapters.safetensors", "optimizer.safetensors", STATE] {
        files::sync_file(&tmp.join(file))?;
    }
    files::sync_dir(tmp)
}

fn publish(tmp: &Path, dir: &Path, root: &Path) -> Result<()> {
    std::fs::rename(tmp, dir).map_err(io(dir))?;
    files::sync_dir(root)
}

fn save_arrays(arrays: &HashMap<String, Array>, path: &Path) -> Result<()> {
    Array::save_safetensors(arrays, None, path)
        .map_err(|e| Error::Invalid(format!("{}: cannot write: {e}", path.display())))
}

/// The complete checkpoints under `root`, oldest first.
fn complete(root: &Path) -> Result<Vec<PathBuf>> {
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(io(root))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("step-"))
                .is_some_and(|n| n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit()))
                && p.join(STATE).is_file()
        })
        .collect();
    steps.sort();
    Ok(steps)
}

/// Keeps the newest [`KEEP`] checkpoints (the one `latest` names among
/// them) and removes dead writers' temporary folders.
fn prune(root: &Path) -> Result<()> {
    for old in complete(root)?.iter().rev().skip(KEEP) {
        std::fs::remove_dir_all(old).map_err(io(old))?;
    }
    for entry in std::fs::read_dir(root).map_err(io(root))?.flatten() {
        if entry.file_name().to_str().is_some_and(files::is_temp_name) {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    Ok(())
}

/// The newest complete checkpoint under `root`, if any: the one `latest`
/// names, or, should that be missing, the newest complete one there is.
pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    let pointer = root.join("latest");
    match std::fs::read_to_string(&pointer) {
        Ok(name) => {
            let dir = root.join(name.trim());
            if dir.join(STATE).is_file() {
                return Ok(Some(dir));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                path: pointer,
                source,
            })
        }
    }
    match std::fs::read_dir(root) {
        Ok(_) => Ok(complete(root)?.pop()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: root.into(),
            source,
        }),
    }
}

/// Loads a checkpoint into `model` (its adapters) and `optimizer`.
pub fn restore(dir: &Path, model: &mut Model, optimizer: &mut TrainOptimizer) -> Result<LoopState> {
    let adapters = dir.join("adapters.safetensors");
    lora::set_adapter_weights(model, load_arrays(&adapters)?, &adapters)?;
    optimizer.load(&dir.join("optimizer.safetensors"), model)?;
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}
