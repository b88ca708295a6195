//! Writing files so that a crash never leaves a half-written one (temporary
//! file, then rename), and reading safetensors with errors naming the file.

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::Array;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    rename(&tmp, path)
}

/// Writes `arrays` as safetensors to `path` through a temporary file and a rename.
pub fn save_arrays_atomic(arrays: &HashMap<String, Array>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("tmp.safetensors");
    Array::save_safetensors(arrays, None, &tmp)
        .map_err(|e| Error::Invalid(format!("{}: cannot write: {e}", tmp.display())))?;
    rename(&tmp, path)
}

/// Reads every tensor of a safetensors file.
pub fn load_arrays(path: &Path) -> Result<HashMap<String, Array>> {
    Array::load_safetensors(path).map_err(|e| {
        Error::Invalid(format!(
            "{}: not a readable safetensors file: {e}",
            path.display()
        ))
    })
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| Error::Io {
        path: to.into(),
        source,
    })
}
