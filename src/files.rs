//! Writing files so that a crash never leaves a half-written one, and never
//! touches a file it did not create: each write goes to a temporary sibling
//! whose name no other writer can pick (process id and a counter), is
//! fsynced, then renamed into place, and the folder is fsynced so that the
//! rename itself survives a power cut. Also reading safetensors with errors
//! naming the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mlx_rs::Array;

use crate::error::{Error, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

/// A hidden sibling of `path` that only this call of this process uses:
/// `.NAME.tmp-PID-N` (with `suffix` appended, for writers that insist on an
/// extension).
pub fn temp_sibling(path: &Path, suffix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    path.with_file_name(format!(".{name}.tmp-{}-{n}{suffix}", std::process::id()))
}

/// Whether `name` is one of [`temp_sibling`]'s names.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Flushes a file's data to the disk.
pub fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// Flushes a folder's entries (names created, renamed or removed in it).
pub fn sync_dir(dir: &Path) -> Result<()> {
    // Folders cannot be opened for syncing on every platform (Windows);
    // where they can, a failure is real.
    match std::fs::File::open(dir) {
        Ok(f) => f.sync_all().map_err(io(dir)),
        Err(_) if cfg!(windows) => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Renames `tmp` over `path` once `tmp` is on the disk, then makes the
/// rename durable.
fn publish(tmp: &Path, path: &Path) -> Result<()> {
    sync_file(tmp)?;
    if let Err(source) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(Error::Io {
            path: path.into(),
            source,
        });
    }
    sync_dir(parent(path))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path, "");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    publish(&tmp, path)
}

/// Writes `arrays` as safetensors to `path` through a temporary file and a rename.
pub fn save_arrays_atomic(arrays: &HashMap<String, Array>, path: &Path) -> Result<()> {
    // MLX appends `.safetensors` to a name without it.
    let tmp = temp_sibling(path, ".safetensors");
    if let Err(e) = Array::save_safetensors(arrays, None, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Invalid(format!(
            "{}: cannot write: {e}",
            path.display()
        )));
    }
    publish(&tmp, path)
}

/// A folder built under a temporary name beside its destination and moved
/// there by [`Staging::publish`] once complete; dropped unpublished (an
/// error half-way), it is removed, so a failed write leaves nothing.
pub struct Staging {
    tmp: PathBuf,
    dest: PathBuf,
    published: bool,
}

impl Staging {
    /// Starts building `dest`, which must not exist (no user folder is ever
    /// replaced).
    pub fn new(dest: &Path) -> Result<Self> {
        if dest.exists() {
            return Err(Error::Invalid(format!(
                "{}: already exists; choose a new folder",
                dest.display()
            )));
        }
        let parent = parent(dest);
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let tmp = temp_sibling(dest, "");
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        Ok(Self {
            tmp,
            dest: dest.into(),
            published: false,
        })
    }

    /// Where to write the folder's files meanwhile.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs every file, then renames the folder into place.
    pub fn publish(mut self) -> Result<PathBuf> {
        for entry in std::fs::read_dir(&self.tmp).map_err(io(&self.tmp))? {
            let path = entry.map_err(io(&self.tmp))?.path();
            if path.is_file() {
                sync_file(&path)?;
            }
        }
        sync_dir(&self.tmp)?;
        if self.dest.exists() {
            return Err(Error::Invalid(format!(
                "{}: appeared while it was being written; choose a new folder",
                self.dest.display()
            )));
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(io(&self.dest))?;
        self.published = true;
        sync_dir(parent(&self.dest))?;
        Ok(self.dest.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_never_collide_with_a_users_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = temp_sibling(&dir.path().join("qwen2.5"), "");
        let b = temp_sibling(&dir.path().join("qwen2.5"), "");
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".qwen2.5.tmp-") && is_temp_name(name));
        // The old scheme's name for `qwen2.5` was `qwen2.tmp`.
        assert_ne!(a, dir.path().join("qwen2.tmp"));
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_staged_folder_never_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("export");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("mine.txt"), b"keep").unwrap();
        assert!(Staging::new(&dest).is_err());
        assert_eq!(std::fs::read(dest.join("mine.txt")).unwrap(), b"keep");
    }

    #[test]
    fn a_staged_folder_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("fused");
        {
            let staging = Staging::new(&dest).unwrap();
            std::fs::write(staging.path().join("half.safetensors"), b"x").unwrap();
            // dropped: an error half-way through
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let staging = Staging::new(&dest).unwrap();
        std::fs::write(staging.path().join("config.json"), b"{}").unwrap();
        assert_eq!(staging.publish().unwrap(), dest);
        assert_eq!(std::fs::read(dest.join("config.json")).unwrap(), b"{}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
