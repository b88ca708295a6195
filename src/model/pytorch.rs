//! PyTorch checkpoints (`pytorch_model.bin`, and shards listed in
//! `pytorch_model.bin.index.json`) as `torch.save` writes them: a zip
//! archive holding `data.pkl` (a pickled state dict) and one raw file per
//! storage under `data/`.
//!
//! Pickle is a small stack machine whose "calls" can run arbitrary Python.
//! This reader never calls anything: it interprets the opcodes a state dict
//! uses into plain values and recognises exactly two constructions — a
//! tensor (`torch._utils._rebuild_tensor_v2` over a persistent storage id)
//! and `collections.OrderedDict` — everything else stays inert data.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use mlx_rs::{ops::indexing::IndexOp, Array, Dtype};

use crate::error::{Error, Result};

/// A pickled value, as far as a state dict needs.
#[derive(Debug, Clone)]
enum Value {
    None,
    Int(i64),
    /// A bool, float or bytes value: never part of a tensor's description.
    Scalar,
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A reference to a Python name (never resolved or imported).
    Global(String),
    /// A storage: its file under `data/` and its element type.
    Storage {
        key: String,
        dtype: Dtype,
    },
    Tensor(TensorRef),
    /// Any other call, kept as data and never run.
    Opaque(String),
    Mark,
}

#[derive(Debug, Clone)]
struct TensorRef {
    key: String,
    dtype: Dtype,
    offset: i64,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

fn bad(source: &Path, what: impl std::fmt::Display) -> Error {
    Error::Invalid(format!(
        "{}: not a readable PyTorch checkpoint: {what}",
        source.display()
    ))
}

/// Reads every tensor of a `torch.save`d state dict.
pub fn read_bin(path: &Path) -> Result<HashMap<String, Array>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| {
        bad(
            path,
            format!("{e} (only the zip format of PyTorch ≥ 1.6 is read; re-save older files with torch.save)"),
        )
    })?;
    let pickle_name = archive
        .file_names()
        .find(|n| n.ends_with("data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| bad(path, "no data.pkl inside"))?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let pickle = read_entry(&mut archive, &pickle_name, path)?;
    let root = Unpickler::new(&pickle, path).run()?;
    let entries = match root {
        Value::Dict(entries) => entries,
        other => {
            return Err(bad(
                path,
                format!("expected a state dict, found {}", kind(&other)),
            ))
        }
    };
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = HashMap::new();
    for (name, value) in entries {
        let (Value::Str(name), Value::Tensor(t)) = (name, value) else {
            continue; // non-tensor entries (e.g. `_metadata`) carry no weights
        };
        if !storages.contains_key(&t.key) {
            let bytes = read_entry(&mut archive, &format!("{prefix}data/{}", t.key), path)?;
            storages.insert(t.key.clone(), bytes);
        }
        let array = tensor(&t, &storages[&t.key])
            .map_err(|e| bad(path, format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, array);
    }
    Ok(tensors)
}

fn read_entry(
    archive: &mut zip::ZipArchive<std::fs::File>,
    name: &str,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut entry = archive
        .by_name(name)
        .map_err(|e| bad(path, format!("`{name}`: {e}")))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| bad(path, format!("`{name}`: {e}")))?;
    Ok(bytes)
}

/// Builds the array a tensor view describes over its storage's bytes.
fn tensor(t: &TensorRef, storage: &[u8]) -> std::result::Result<Array, String> {
    let size = element_size(t.dtype);
    let elements = storage.len() / size;
    // The furthest element the view touches must lie inside the storage.
    let last = t.offset
        + t.shape
            .iter()
            .zip(&t.strides)
            .map(|(&n, &s)| (n - 1).max(0) * s)
            .sum::<i64>();
    let empty = t.shape.contains(&0);
    if !empty && (t.offset < 0 || last >= elements as i64) {
        return Err(format!(
            "its view reaches element {last} of a storage of {elements} (truncated file?)"
        ));
    }
    let flat_shape = [elements as i32];
    // SAFETY: `storage` holds `elements` values of `t.dtype` (checked above
    // by the division), and MLX copies the bytes into its own buffer.
    let flat = unsafe { Array::from_raw_data(storage.as_ptr().cast(), &flat_shape, t.dtype) };
    let shape: Vec<i32> = t.shape.iter().map(|&d| d as i32).collect();
    let row_major = {
        let mut expected = 1i64;
        let mut ok = true;
        for (&n, &s) in t.shape.iter().zip(&t.strides).rev() {
            if n > 1 && s != expected {
                ok = false;
            }
            expected *= n;
        }
        ok
    };
    let result = if row_major {
        let n: i64 = t.shape.iter().product();
        flat.index(t.offset as i32..(t.offset + n) as i32)
            .reshape(&shape)
    } else {
        flat.as_strided(&shape[..], &t.strides[..], t.offset as usize)
    };
    result.map_err(|e| e.to_string())
}

fn kind(v: &Value) -> String {
    match v {
        Value::None => "None",
        Value::Int(_) => "an int",
        Value::Scalar => "a scalar",
        Value::Str(_) => "a string",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Global(_) => "a global",
        Value::Storage { .. } => "a storage",
        Value::Tensor(_) => "a tensor",
        Value::Opaque(name) => return format!("an object of `{name}`"),
        Value::Mark => "a mark",
    }
    .into()
}

fn element_size(dtype: Dtype) -> usize {
    match dtype {
        Dtype::Float64 | Dtype::Int64 | Dtype::Uint64 | Dtype::Complex64 => 8,
        Dtype::Float32 | Dtype::Int32 | Dtype::Uint32 => 4,
        Dtype::Float16 | Dtype::Bfloat16 | Dtype::Int16 | Dtype::Uint16 => 2,
        Dtype::Int8 | Dtype::Uint8 | Dtype::Bool => 1,
    }
}

fn storage_dtype(name: &str) -> Option<Dtype> {
    Some(match name.rsplit('.').next()? {
        "FloatStorage" => Dtype::Float32,
        "HalfStorage" => Dtype::Float16,
        "BFloat16Storage" => Dtype::Bfloat16,
        "DoubleStorage" => Dtype::Float64,
        "LongStorage" => Dtype::Int64,
        "IntStorage" => Dtype::Int32,
        "ShortStorage" => Dtype::Int16,
        "CharStorage" => Dtype::Int8,
        "ByteStorage" => Dtype::Uint8,
        "BoolStorage" => Dtype::Bool,
        _ => return None,
    })
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    source: &'a Path,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8], source: &'a Path) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            source,
        }
    }

    fn err(&self, what: impl std::fmt::Display) -> Error {
        bad(
            self.source,
            format!("data.pkl at byte {}: {what}", self.pos),
        )
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| self.err("ends early (truncated file?)"))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn uint(&mut self, n: usize) -> Result<u64> {
        let b = self.bytes(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("unterminated line"))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }

    fn text(&mut self, n: usize) -> Result<Value> {
        let b = self.bytes(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Value> {
        match self.stack.last_mut() {
            Some(v) => Ok(v),
            None => Err(bad(self.source, "data.pkl: stack underflow")),
        }
    }

    /// Pops everything above the last mark (and the mark).
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| self.err("no mark"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.uint(1)? as u8;
            match op {
                0x80 => {
                    self.uint(1)?; // PROTO
                }
                0x95 => {
                    self.uint(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Scalar),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'K' => {
                    let v = self.uint(1)? as i64;
                    self.stack.push(Value::Int(v))
                }
                b'M' => {
                    let v = self.uint(2)? as i64;
                    self.stack.push(Value::Int(v))
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32 as i64;
                    self.stack.push(Value::Int(v))
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.uint(1)? as usize;
                    let b = self.bytes(n)?;
                    if n > 8 {
                        return Err(self.err("integer too large"));
                    }
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v))
                }
                b'G' => {
                    self.bytes(8)?;
                    self.stack.push(Value::Scalar)
                }
                b'X' => {
                    let n = self.uint(4)? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v)
                }
                0x8c | b'U' => {
                    let n = self.uint(1)? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v)
                }
                0x8d => {
                    let n = self.uint(8)? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v)
                }
                b'T' => {
                    let n = self.uint(4)? as usize;
                    let v = self.text(n)?;
                    self.stack.push(v)
                }
                b'C' => {
                    let n = self.uint(1)? as usize;
                    self.bytes(n)?;
                    self.stack.push(Value::Scalar)
                }
                b'B' => {
                    let n = self.uint(4)? as usize;
                    self.bytes(n)?;
                    self.stack.push(Value::Scalar)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(format!("{module}.{name}")))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.stack.push(Value::Global(format!("{m}.{n}")))
                        }
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'q' => {
                    let i = self.uint(1)? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.uint(4)? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = self.uint(if op == b'h' { 1 } else { 4 })? as u32;
                    let v = self
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| self.err(format!("memo {i} is unset")))?;
                    self.stack.push(v)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items))
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err(self.err("APPEND to a non-list")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(self.err("APPENDS to a non-list")),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err(self.err("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd count"));
                    }
                    let mut it = items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    match self.top()? {
                        Value::Dict(d) => d.extend(pairs),
                        _ => return Err(self.err("SETITEMS on a non-dict")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.storage(pid)?;
                    self.stack.push(storage)
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let value = self.reduce(func, args)?;
                    self.stack.push(value)
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args), kept inert.
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let name = match cls {
                        Value::Global(n) => n,
                        _ => "object".into(),
                    };
                    self.stack.push(Value::Opaque(name))
                }
                b'b' => {
                    // BUILD sets an object's state (an OrderedDict's
                    // `_metadata`); nothing a weight depends on.
                    self.pop()?;
                }
                other => {
                    return Err(self.err(format!("unsupported pickle opcode 0x{other:02x}")));
                }
            }
        }
    }

    /// `('storage', torch.FloatStorage, key, location, numel)`.
    fn storage(&self, pid: Value) -> Result<Value> {
        let Value::Tuple(items) = pid else {
            return Err(self.err("a persistent id that is not a tuple"));
        };
        match items.as_slice() {
            [Value::Str(tag), Value::Global(class), Value::Str(key), ..] if tag == "storage" => {
                let dtype = storage_dtype(class)
                    .ok_or_else(|| self.err(format!("storage type `{class}` is not supported")))?;
                Ok(Value::Storage {
                    key: key.clone(),
                    dtype,
                })
            }
            _ => Err(self.err("a persistent id that is not a storage")),
        }
    }

    fn reduce(&self, func: Value, args: Value) -> Result<Value> {
        let Value::Global(name) = func else {
            return Ok(Value::Opaque("call".into()));
        };
        let Value::Tuple(args) = args else {
            return Ok(Value::Opaque(name));
        };
        match name.as_str() {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                let ints = |v: &Value| -> Option<Vec<i64>> {
                    match v {
                        Value::Tuple(xs) | Value::List(xs) => xs
                            .iter()
                            .map(|x| match x {
                                Value::Int(i) => Some(*i),
                                _ => None,
                            })
                            .collect(),
                        _ => None,
                    }
                };
                match args.as_slice() {
                    [Value::Storage { key, dtype }, Value::Int(offset), size, stride, ..] => {
                        let (shape, strides) = ints(size)
                            .zip(ints(stride))
                            .ok_or_else(|| self.err("a tensor with a malformed size or stride"))?;
                        if shape.len() != strides.len() {
                            return Err(self.err("a tensor whose size and stride differ in rank"));
                        }
                        Ok(Value::Tensor(TensorRef {
                            key: key.clone(),
                            dtype: *dtype,
                            offset: *offset,
                            shape,
                            strides,
                        }))
                    }
                    _ => Err(self.err("a tensor with unexpected arguments")),
                }
            }
            // nn.Parameter(tensor, requires_grad, hooks) → the tensor.
            "torch._utils._rebuild_parameter" => match args.into_iter().next() {
                Some(t @ Value::Tensor(_)) => Ok(t),
                _ => Err(self.err("a parameter without a tensor")),
            },
            "collections.OrderedDict" => Ok(Value::Dict(Vec::new())),
            _ => Ok(Value::Opaque(name)),
        }
    }
}
