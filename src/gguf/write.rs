//! A GGUF v3 writer: metadata of every value type, tensor infos, and tensor
//! data streamed to disk one piece at a time (the caller never needs the
//! whole model in memory twice).
//!
//! The file is written to a unique temporary file in the destination folder,
//! flushed and fsynced, then renamed onto the final path, so a reader never
//! sees half a file and a crash leaves the user's files alone. An existing
//! file is replaced only when the caller says so.
//!
//! Layout (the GGUF spec): "GGUF", version 3, tensor count, key/value count,
//! the key/values, the tensor infos (name, dims, type, offset from the data
//! start), zero padding to `general.alignment` (32 when absent), then each
//! tensor's data at an aligned offset, each followed by zero padding to the
//! alignment.

use super::{Array, GgmlType, Value};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const VERSION: u32 = 3;
const DEFAULT_ALIGNMENT: u64 = 32;

/// A tensor the file will hold: llama.cpp's name, GGUF dims (`dims[0]`
/// varies fastest, the row length) and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
}

impl TensorSpec {
    /// Bytes of data (None when the dims do not make whole blocks).
    pub fn n_bytes(&self) -> Option<u64> {
        let block = self.ggml_type.block_size() as u64;
        let n = self.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d))?;
        if self.ggml_type.type_size() == 0 || self.dims.first().is_some_and(|d| d % block != 0) {
            return None;
        }
        (n / block).checked_mul(self.ggml_type.type_size() as u64)
    }
}

/// A GGUF file being written. Create it with the whole header, then give
/// each tensor's bytes in order with [`GgufWriter::write_data`] (in as
/// many pieces as convenient), then [`GgufWriter::finish`].
pub struct GgufWriter {
    out: BufWriter<tempfile::NamedTempFile>,
    path: PathBuf,
    overwrite: bool,
    alignment: u64,
    tensors: Vec<(String, u64)>,
    /// The tensor being written and the bytes of it written so far.
    current: usize,
    done: u64,
}

fn align(n: u64, a: u64) -> u64 {
    n.div_ceil(a) * a
}

/// The header (padded to the alignment), the alignment, and each tensor's
/// data size, once every value has been checked.
type Layout = (Vec<u8>, u64, Vec<(String, u64)>);

fn layout(metadata: &[(String, Value)], tensors: &[TensorSpec]) -> Result<Layout, String> {
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
        Some((_, v)) => {
            return Err(format!(
                "general.alignment must be a u32 power of two, not {v:?}"
            ))
        }
    };
    let mut keys = std::collections::HashSet::new();
    for (k, _) in metadata {
        if !keys.insert(k.as_str()) {
            return Err(format!("metadata key {k} is given twice"));
        }
    }
    let mut names = std::collections::HashSet::new();
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(format!("tensor {} is given twice", t.name));
        }
        if t.dims.is_empty() || t.dims.len() > 4 {
            return Err(format!(
                "tensor {} has {} dims (1 to 4)",
                t.name,
                t.dims.len()
            ));
        }
        let n = t.n_bytes().ok_or_else(|| {
            format!(
                "tensor {} ({:?}) cannot be stored as {}: rows of {} values, blocks of {}",
                t.name,
                t.dims,
                t.ggml_type,
                t.dims[0],
                t.ggml_type.block_size()
            )
        })?;
        sizes.push((t.name.clone(), n));
    }

    let mut header = Vec::new();
    header.extend_from_slice(b"GGUF");
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_string(&mut header, k);
        put_value(&mut header, v);
    }
    let mut offset = 0u64;
    for (t, (_, n)) in tensors.iter().zip(&sizes) {
        put_string(&mut header, &t.name);
        header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            header.extend_from_slice(&d.to_le_bytes());
        }
        header.extend_from_slice(&t.ggml_type.id().to_le_bytes());
        header.extend_from_slice(&offset.to_le_bytes());
        offset = align(offset + n, alignment);
    }
    header.resize(align(header.len() as u64, alignment) as usize, 0);

    Ok((header, alignment, sizes))
}

/// The size of the file [`GgufWriter::create`] would write for this
/// header, with every tensor's data (each padded to the alignment).
pub fn file_size(metadata: &[(String, Value)], tensors: &[TensorSpec]) -> Result<u64, String> {
    let (header, alignment, sizes) = layout(metadata, tensors)?;
    Ok(header.len() as u64 + sizes.iter().map(|(_, n)| align(*n, alignment)).sum::<u64>())
}

impl GgufWriter {
    /// Starts `path`: checks the header, writes it to a temporary file next
    /// to `path`. Refuses when `path` exists unless `overwrite`.
    pub fn create(
        path: &Path,
        metadata: &[(String, Value)],
        tensors: &[TensorSpec],
        overwrite: bool,
    ) -> Result<GgufWriter, String> {
        let shown = path.display();
        if !overwrite && path.symlink_metadata().is_ok() {
            return Err(format!("{shown} exists; not overwriting it"));
        }
        let (header, alignment, sizes) = layout(metadata, tensors)?;

        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map_or("out".into(), |n| n.to_string_lossy().into_owned());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
        // Temporary files are private (0600); a model file is not.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).map_err(
                |e| {
                    format!(
                        "cannot set the permissions of {}: {e}",
                        tmp.path().display()
                    )
                },
            )?;
        }
        let mut out = BufWriter::with_capacity(1 << 20, tmp);
        out.write_all(&header)
            .map_err(|e| format!("writing {shown}: {e}"))?;
        let mut w = GgufWriter {
            out,
            path: path.to_path_buf(),
            overwrite,
            alignment,
            tensors: sizes,
            current: 0,
            done: 0,
        };
        w.skip_empty()?;
        Ok(w)
    }

    /// The alignment in use.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Moves past finished (and empty) tensors, padding after each.
    fn skip_empty(&mut self) -> Result<(), String> {
        while self.current < self.tensors.len() && self.done == self.tensors[self.current].1 {
            let n = self.tensors[self.current].1;
            let pad = (align(n, self.alignment) - n) as usize;
            self.out
                .write_all(&vec![0u8; pad])
                .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
            self.current += 1;
            self.done = 0;
        }
        Ok(())
    }

    /// Appends `bytes` to the tensor data, in the order of the tensors given
    /// to [`GgufWriter::create`]; a piece may end one tensor and start the
    /// next.
    pub fn write_data(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            let Some(&(_, n)) = self.tensors.get(self.current) else {
                return Err(format!(
                    "{} more bytes than the tensors of {} hold",
                    bytes.len(),
                    self.path.display()
                ));
            };
            let take = bytes.len().min((n - self.done) as usize);
            self.out
                .write_all(&bytes[..take])
                .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
            self.done += take as u64;
            bytes = &bytes[take..];
            self.skip_empty()?;
        }
        Ok(())
    }

    /// Checks every tensor was written, flushes, fsyncs and renames the file
    /// onto its path; returns the path.
    pub fn finish(self) -> Result<PathBuf, String> {
        let shown = self.path.display().to_string();
        if let Some((name, n)) = self.tensors.get(self.current) {
            return Err(format!(
                "{shown}: tensor {name} has {} of its {n} bytes",
                self.done
            ));
        }
        let tmp = self
            .out
            .into_inner()
            .map_err(|e| format!("writing {shown}: {}", e.error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| format!("syncing {shown}: {e}"))?;
        let persisted = if self.overwrite {
            tmp.persist(&self.path).map_err(|e| e.error)
        } else {
            // Fails, leaving nothing behind, if the path appeared meanwhile.
            tmp.persist_noclobber(&self.path).map_err(|e| e.error)
        };
        persisted.map_err(|e| format!("cannot move the finished file to {shown}: {e}"))?;
        // The rename itself is durable once the folder is synced.
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(self.path)
    }
}

fn put_string(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// The GGUF value type id of a value.
fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn element_id(a: &Array) -> u32 {
    match a {
        Array::U8(_) => 0,
        Array::I8(_) => 1,
        Array::U16(_) => 2,
        Array::I16(_) => 3,
        Array::U32(_) => 4,
        Array::I32(_) => 5,
        Array::F32(_) => 6,
        Array::Bool(_) => 7,
        Array::Strings(_) => 8,
        Array::Arrays(_) => 9,
        Array::U64(_) => 10,
        Array::I64(_) => 11,
        Array::F64(_) => 12,
    }
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    b.extend_from_slice(&type_id(v).to_le_bytes());
    put_payload(b, v);
}

fn put_payload(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::String(s) => put_string(b, s),
        Value::Array(a) => put_array(b, a),
    }
}

/// Element type, count, elements.
fn put_array(b: &mut Vec<u8>, a: &Array) {
    b.extend_from_slice(&element_id(a).to_le_bytes());
    b.extend_from_slice(&(a.len() as u64).to_le_bytes());
    fn all<T: Copy>(b: &mut Vec<u8>, v: &[T], f: impl Fn(T) -> Value) {
        for &x in v {
            put_payload(b, &f(x));
        }
    }
    match a {
        Array::U8(v) => b.extend_from_slice(v),
        Array::I8(v) => all(b, v, Value::I8),
        Array::U16(v) => all(b, v, Value::U16),
        Array::I16(v) => all(b, v, Value::I16),
        Array::U32(v) => all(b, v, Value::U32),
        Array::I32(v) => all(b, v, Value::I32),
        Array::U64(v) => all(b, v, Value::U64),
        Array::I64(v) => all(b, v, Value::I64),
        Array::F32(v) => all(b, v, Value::F32),
        Array::F64(v) => all(b, v, Value::F64),
        Array::Bool(v) => all(b, v, Value::Bool),
        Array::Strings(v) => v.iter().for_each(|s| put_string(b, s)),
        Array::Arrays(v) => v.iter().for_each(|inner| put_array(b, inner)),
    }
}
