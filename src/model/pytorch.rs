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
    let file_len = file
        .metadata()
        .map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?
        .len();
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
    let pickle = read_entry(&mut archive, &pickle_name, path, file_len)?;
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
            let bytes = read_entry(
                &mut archive,
                &format!("{prefix}data/{}", t.key),
                path,
                file_len,
            )?;
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
    file_len: u64,
) -> Result<Vec<u8>> {
    let mut entry = archive
        .by_name(name)
        .map_err(|e| bad(path, format!("`{name}`: {e}")))?;
    // The declared size is the zip's word, not the file's: an entry can
    // hold no more than the archive (torch.save stores, never compresses).
    let declared = entry.size();
    let limit = if entry.compression() == zip::CompressionMethod::Stored {
        entry.compressed_size().min(file_len)
    } else {
        file_len
    };
    if declared > limit {
        return Err(bad(
            path,
            format!(
                "`{name}`: size: the zip header declares {declared} bytes, expected at most {limit} (the bytes the file holds)"
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    (&mut entry)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(path, format!("`{name}`: {e}")))?;
    if bytes.len() as u64 != declared {
        return Err(bad(
            path,
            format!(
                "`{name}`: size: {} bytes read, the zip header declares {declared}",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Builds the array a tensor view describes over its storage's bytes.
/// Every size, stride and offset is checked before MLX sees it: negative
/// or overflowing values, and views reaching past the storage, are refused.
fn tensor(t: &TensorRef, storage: &[u8]) -> std::result::Result<Array, String> {
    let size = element_size(t.dtype);
    let elements = storage.len() / size;
    if elements > i32::MAX as usize {
        return Err(format!(
            "storage: {elements} elements, expected at most {}",
            i32::MAX
        ));
    }
    if t.offset < 0 || t.offset > i32::MAX as i64 {
        return Err(format!(
            "storage_offset: expected 0 to {}, got {}",
            i32::MAX,
            t.offset
        ));
    }
    if let Some(&d) = t
        .shape
        .iter()
        .find(|&&d| !(0..=i32::MAX as i64).contains(&d))
    {
        return Err(format!(
            "size: expected dimensions from 0 to {}, got {d}",
            i32::MAX
        ));
    }
    if let Some(&s) = t
        .strides
        .iter()
        .find(|&&s| !(0..=i32::MAX as i64).contains(&s))
    {
        return Err(format!(
            "stride: expected strides from 0 to {}, got {s}",
            i32::MAX
        ));
    }
    let n = t
        .shape
        .iter()
        .try_fold(1i64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i32::MAX as i64)
        .ok_or_else(|| format!("size: {:?} holds more than {} elements", t.shape, i32::MAX))?;
    let empty = n == 0;
    // The furthest element the view touches must lie inside the storage
    // (in i128: each term is below 2^62, the rank is unbounded).
    let last = t.offset as i128
        + t.shape
            .iter()
            .zip(&t.strides)
            .map(|(&n, &s)| (n as i128 - 1).max(0) * s as i128)
            .sum::<i128>();
    if !empty && last >= elements as i128 {
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
    let result = if empty {
        flat.index(0..0).reshape(&shape)
    } else if row_major {
        flat.index(t.offset as i32..(t.offset + n) as i32)
            .reshape(&shape)
    } else {
        flat.as_strided(&shape[..], &t.strides[..], t.offset as usize)
    };
    result.map_err(|e| crate::error::without_source_locations(&e.to_string()))
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

/// The deepest nesting of tuples, lists and dicts accepted (a state dict
/// needs four or five levels): deeper values would make every recursive
/// walk (cloning, dropping) a stack overflow risk.
const MAX_DEPTH: u32 = 100;

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    /// Values with their nesting depth.
    stack: Vec<(Value, u32)>,
    memo: HashMap<u32, (Value, u32)>,
    /// Nodes copied into and out of the memo so far, and the most allowed:
    /// a few bytes of pickle can otherwise copy a value exponentially often.
    copied: usize,
    copy_budget: usize,
    source: &'a Path,
}

/// The nodes of a value (its depth is bounded, so the recursion is).
fn nodes(v: &Value) -> usize {
    match v {
        Value::Str(s) | Value::Global(s) | Value::Opaque(s) => 1 + s.len() / 16,
        Value::Tuple(xs) | Value::List(xs) => 1 + xs.iter().map(nodes).sum::<usize>(),
        Value::Dict(pairs) => {
            1 + pairs
                .iter()
                .map(|(k, v)| nodes(k) + nodes(v))
                .sum::<usize>()
        }
        Value::Tensor(t) => 1 + t.shape.len() + t.key.len() / 16,
        Value::Storage { key, .. } => 1 + key.len() / 16,
        _ => 1,
    }
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8], source: &'a Path) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            copied: 0,
            copy_budget: (1 << 22) + 16 * data.len(),
            source,
        }
    }

    fn err(&self, what: impl std::fmt::Display) -> Error {
        bad(
            self.source,
            format!("data.pkl at byte {}: {what}", self.pos),
        )
    }

    fn push(&mut self, v: Value) {
        self.stack.push((v, 0));
    }

    fn push_nested(&mut self, v: Value, depth: u32) -> Result<()> {
        self.check_depth(depth)?;
        self.stack.push((v, depth));
        Ok(())
    }

    fn check_depth(&self, depth: u32) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!(
                "nesting: expected at most {MAX_DEPTH} levels of tuples, lists and dicts"
            )));
        }
        Ok(())
    }

    /// Counts `n` nodes copied into or out of the memo against the budget.
    fn count_copy(&mut self, n: usize) -> Result<()> {
        self.copied = self.copied.saturating_add(n);
        if self.copied > self.copy_budget {
            return Err(self.err(format!(
                "memo: copies of memoized values exceed {} nodes for a pickle of {} bytes (a memo bomb?)",
                self.copy_budget,
                self.data.len()
            )));
        }
        Ok(())
    }

    fn memo_put(&mut self, i: u32) -> Result<()> {
        let top = self
            .stack
            .last()
            .ok_or_else(|| self.err("stack underflow"))?;
        self.count_copy(nodes(&top.0))?;
        let top = self.stack.last().cloned().expect("checked above");
        self.memo.insert(i, top);
        Ok(())
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
        self.pop_nested().map(|(v, _)| v)
    }

    fn pop_nested(&mut self) -> Result<(Value, u32)> {
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut (Value, u32)> {
        match self.stack.last_mut() {
            Some(v) => Ok(v),
            None => Err(bad(self.source, "data.pkl: stack underflow")),
        }
    }

    /// Pops everything above the last mark (and the mark).
    fn pop_mark(&mut self) -> Result<Vec<(Value, u32)>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v.0, Value::Mark))
            .ok_or_else(|| self.err("no mark"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    /// `items` made one container's children: its depth, checked.
    fn depth_of(&self, items: &[(Value, u32)]) -> Result<u32> {
        let depth = 1 + items.iter().map(|i| i.1).max().unwrap_or(0);
        self.check_depth(depth)?;
        Ok(depth)
    }

    /// Adds children to the container on top, raising its depth.
    fn extend_top(&mut self, items: Vec<(Value, u32)>, what: &str) -> Result<()> {
        let depth = self.depth_of(&items)?;
        let top = self.top()?;
        top.1 = top.1.max(depth);
        match (&mut top.0, what) {
            (Value::List(l), "list") => l.extend(items.into_iter().map(|i| i.0)),
            (Value::Dict(d), "dict") => {
                let mut it = items.into_iter().map(|i| i.0);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            _ => return Err(self.err(format!("adding items to a non-{what}"))),
        }
        Ok(())
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
                b'(' => self.push(Value::Mark),
                b'N' => self.push(Value::None),
                0x88 | 0x89 => self.push(Value::Scalar),
                b'}' => self.push_nested(Value::Dict(Vec::new()), 1)?,
                b']' => self.push_nested(Value::List(Vec::new()), 1)?,
                b')' => self.push_nested(Value::Tuple(Vec::new()), 1)?,
                b'K' => {
                    let v = self.uint(1)? as i64;
                    self.push(Value::Int(v))
                }
                b'M' => {
                    let v = self.uint(2)? as i64;
                    self.push(Value::Int(v))
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32 as i64;
                    self.push(Value::Int(v))
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
                    self.push(Value::Int(v))
                }
                b'G' => {
                    self.bytes(8)?;
                    self.push(Value::Scalar)
                }
                b'X' => {
                    let n = self.uint(4)? as usize;
                    let v = self.text(n)?;
                    self.push(v)
                }
                0x8c | b'U' => {
                    let n = self.uint(1)? as usize;
                    let v = self.text(n)?;
                    self.push(v)
                }
                0x8d => {
                    let n = self.uint(8)? as usize;
                    let v = self.text(n)?;
                    self.push(v)
                }
                b'T' => {
                    let n = self.uint(4)? as usize;
                    let v = self.text(n)?;
                    self.push(v)
                }
                b'C' => {
                    let n = self.uint(1)? as usize;
                    self.bytes(n)?;
                    self.push(Value::Scalar)
                }
                b'B' => {
                    let n = self.uint(4)? as usize;
                    self.bytes(n)?;
                    self.push(Value::Scalar)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(format!("{module}.{name}")))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.push(Value::Global(format!("{m}.{n}")))
                        }
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'q' => {
                    let i = self.uint(1)? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.uint(4)? as u32;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?;
                }
                b'h' | b'j' => {
                    let i = self.uint(if op == b'h' { 1 } else { 4 })? as u32;
                    let v = self
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| self.err(format!("memo {i} is unset")))?;
                    self.count_copy(nodes(&v.0))?;
                    self.stack.push(v)
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let depth = self.depth_of(&items)?;
                    let items = items.into_iter().map(|i| i.0).collect();
                    self.push_nested(Value::Tuple(items), depth)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let depth = self.depth_of(&items)?;
                    let items = items.into_iter().map(|i| i.0).collect();
                    self.push_nested(Value::Tuple(items), depth)?
                }
                b'a' => {
                    let v = self.pop_nested()?;
                    self.extend_top(vec![v], "list")?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, "list")?;
                }
                b's' => {
                    let v = self.pop_nested()?;
                    let k = self.pop_nested()?;
                    self.extend_top(vec![k, v], "dict")?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd count"));
                    }
                    self.extend_top(items, "dict")?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.storage(pid)?;
                    self.push(storage)
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let value = self.reduce(func, args)?;
                    self.push(value)
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args), kept inert.
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let name = match cls {
                        Value::Global(n) => n,
                        _ => "object".into(),
                    };
                    self.push(Value::Opaque(name))
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
