//! GGUF files, read by FineTune itself: the header and metadata parsed and
//! checked in full before anything is used, tensors memory-mapped, and every
//! common GGML block type dequantized to `f32` bit for bit as gguf-py does.
//!
//! A hostile or damaged file gives an error that names the file (and the key
//! or tensor) and says what is wrong; it never panics and never allocates
//! from a declared count that the bytes left could not hold.

pub mod mix;
pub mod quantize;
pub mod quants;
pub mod write;

pub use quants::{to_mlx_affine, Affine};

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The bytes "GGUF".
const MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of tensor data when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML_MAX_DIMS.
const MAX_DIMS: u32 = 4;
/// How deep arrays of arrays may nest.
const MAX_ARRAY_DEPTH: usize = 8;

/// A GGML tensor type, by its id in the file.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    /// An id no GGML type is known by.
    Other(u32),
}

/// (type, id, block size, bytes per block) of every known type.
const TYPES: [(GgmlType, u32, usize, usize); 34] = {
    use GgmlType::*;
    const K: usize = 256;
    [
        (F32, 0, 1, 4),
        (F16, 1, 1, 2),
        (Q4_0, 2, 32, 18),
        (Q4_1, 3, 32, 20),
        (Q5_0, 6, 32, 22),
        (Q5_1, 7, 32, 24),
        (Q8_0, 8, 32, 34),
        (Q8_1, 9, 32, 40),
        (Q2_K, 10, K, 2 + 2 + K / 16 + K / 4),
        (Q3_K, 11, K, 2 + K / 4 + K / 8 + 12),
        (Q4_K, 12, K, 2 + 2 + K / 2 + 12),
        (Q5_K, 13, K, 2 + 2 + K / 2 + K / 8 + 12),
        (Q6_K, 14, K, 2 + K / 2 + K / 4 + K / 16),
        (Q8_K, 15, K, 4 + K + K / 8),
        (IQ2_XXS, 16, K, 2 + K / 4),
        (IQ2_XS, 17, K, 2 + K / 4 + K / 32),
        (IQ3_XXS, 18, K, 2 + K / 4 + K / 8),
        (IQ1_S, 19, K, 2 + K / 8 + K / 16),
        (IQ4_NL, 20, 32, 18),
        (IQ3_S, 21, K, 2 + K / 4 + K / 8 + K / 32 + 4),
        (IQ2_S, 22, K, 2 + K / 4 + K / 16),
        (IQ4_XS, 23, K, 2 + 2 + K / 2 + K / 64),
        (I8, 24, 1, 1),
        (I16, 25, 1, 2),
        (I32, 26, 1, 4),
        (I64, 27, 1, 8),
        (F64, 28, 1, 8),
        (IQ1_M, 29, K, K / 8 + K / 16 + K / 32),
        (BF16, 30, 1, 2),
        (TQ1_0, 34, K, 2 + 4 * 13),
        (TQ2_0, 35, K, 2 + 64),
        (MXFP4, 39, 32, 17),
        (NVFP4, 40, 64, 36),
        (Q1_0, 41, 128, 18),
    ]
};

/// The types FineTune dequantizes.
const SUPPORTED: [GgmlType; 19] = {
    use GgmlType::*;
    [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,
        TQ1_0, TQ2_0, MXFP4, NVFP4,
    ]
};

impl GgmlType {
    /// The type with GGML id `id` (`Other(id)` when none is known).
    pub fn from_id(id: u32) -> GgmlType {
        TYPES
            .iter()
            .find(|t| t.1 == id)
            .map_or(GgmlType::Other(id), |t| t.0)
    }

    fn entry(&self) -> Option<&'static (GgmlType, u32, usize, usize)> {
        TYPES.iter().find(|t| t.0 == *self)
    }

    /// The GGML id.
    pub fn id(&self) -> u32 {
        match self {
            GgmlType::Other(id) => *id,
            t => t.entry().map_or(u32::MAX, |e| e.1),
        }
    }

    /// The name llama.cpp gives the type ("Q4_K"); "unknown" for `Other`.
    pub fn name(&self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
            Other(_) => "unknown",
        }
    }

    /// Values per block (1 for `Other`).
    pub fn block_size(&self) -> usize {
        self.entry().map_or(1, |e| e.2)
    }

    /// Bytes per block (0 for `Other`).
    pub fn type_size(&self) -> usize {
        self.entry().map_or(0, |e| e.3)
    }

    /// Whether FineTune can dequantize it.
    pub fn is_supported(&self) -> bool {
        SUPPORTED.contains(self)
    }

    /// Every supported type, in [`GgmlType::supported_names`]'s order.
    pub fn supported() -> &'static [GgmlType] {
        &SUPPORTED
    }

    /// "F32, F16, …": the supported types, for messages.
    pub fn supported_names() -> String {
        SUPPORTED
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// "IQ2_XXS (id 16)", for messages.
    pub fn describe(&self) -> String {
        match self {
            GgmlType::Other(id) => format!("id {id}, which is no GGML type FineTune knows"),
            t => format!("{} (id {})", t.name(), t.id()),
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgmlType::Other(id) => write!(f, "unknown type id {id}"),
            t => f.write_str(t.name()),
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Array),
}

/// A metadata array: one element type, stored compactly.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    Strings(Vec<String>),
    /// Arrays of arrays (each inner array may have its own element type).
    Arrays(Vec<Array>),
}

impl Value {
    /// The GGUF type in words ("u32", "string", "array of f32 (3 elements)"),
    /// for messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::U8(_) => "u8".into(),
            Value::I8(_) => "i8".into(),
            Value::U16(_) => "u16".into(),
            Value::I16(_) => "i16".into(),
            Value::U32(_) => "u32".into(),
            Value::I32(_) => "i32".into(),
            Value::U64(_) => "u64".into(),
            Value::I64(_) => "i64".into(),
            Value::F32(_) => "f32".into(),
            Value::F64(_) => "f64".into(),
            Value::Bool(_) => "bool".into(),
            Value::String(_) => "string".into(),
            Value::Array(a) => format!("array of {} ({} elements)", a.element_name(), a.len()),
        }
    }

    /// Any integer value, widened (None for other types).
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }
}

impl Array {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::Strings(v) => v.len(),
            Array::Arrays(v) => v.len(),
        }
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type in words ("f32", "string", "array").
    pub fn element_name(&self) -> &'static str {
        match self {
            Array::U8(_) => "u8",
            Array::I8(_) => "i8",
            Array::U16(_) => "u16",
            Array::I16(_) => "i16",
            Array::U32(_) => "u32",
            Array::I32(_) => "i32",
            Array::U64(_) => "u64",
            Array::I64(_) => "i64",
            Array::F32(_) => "f32",
            Array::F64(_) => "f64",
            Array::Bool(_) => "bool",
            Array::Strings(_) => "string",
            Array::Arrays(_) => "array",
        }
    }

    /// Integer elements, widened (None when the elements are not integers).
    fn integers(&self) -> Option<Vec<i128>> {
        fn w<T: Copy + Into<i128>>(v: &[T]) -> Vec<i128> {
            v.iter().map(|&x| x.into()).collect()
        }
        Some(match self {
            Array::U8(v) => w(v),
            Array::I8(v) => w(v),
            Array::U16(v) => w(v),
            Array::I16(v) => w(v),
            Array::U32(v) => w(v),
            Array::I32(v) => w(v),
            Array::U64(v) => w(v),
            Array::I64(v) => w(v),
            _ => return None,
        })
    }
}

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` varies fastest.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute offset of the tensor's data in the file.
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: usize,
}

impl TensorInfo {
    /// Row-major shape (the dims reversed), as MLX wants it. Every dim was
    /// checked to fit an `i32` when the file was opened.
    pub fn shape(&self) -> Vec<i32> {
        self.dims
            .iter()
            .rev()
            .map(|&d| i32::try_from(d).unwrap_or(i32::MAX))
            .collect()
    }

    /// Number of values (checked not to overflow when the file was opened).
    pub fn n_elements(&self) -> usize {
        self.dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
            .unwrap_or(usize::MAX)
    }
}

/// A GGUF file, memory-mapped, its header parsed and checked.
pub struct GgufFile {
    path: PathBuf,
    map: memmap2::Mmap,
    version: u32,
    kvs: Vec<(String, Value)>,
    kv_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.kvs.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps `path` and parses and checks its header: every count,
    /// length, type and tensor range is validated before use.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < 24 {
            return Err(invalid(
                path,
                format!("{len} bytes is too short for a GGUF file (its header alone takes 24)"),
            ));
        }
        // SAFETY: the map is read-only and private to this value. As with
        // every memory-mapped reader, a file truncated by another process
        // while mapped is outside what this can guard against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let header = parse(&map).map_err(|m| invalid(path, m))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            version: header.version,
            kvs: header.kvs,
            kv_index: header.kv_index,
            tensors: header.tensors,
            tensor_index: header.tensor_index,
            alignment: header.alignment,
            data_offset: header.data_offset,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data (`general.alignment`, 32 by default).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset where tensor data starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The metadata keys, in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.kvs.iter().map(|(k, _)| k.as_str())
    }

    /// The metadata value of `key`.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).map(|&i| &self.kvs[i].1)
    }

    fn wrong_type(&self, key: &str, found: &Value, expected: &str) -> Error {
        invalid(
            &self.path,
            format!(
                "metadata key `{key}` has type {}, expected {expected}",
                found.type_name()
            ),
        )
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(key, v, "a string")),
        }
    }

    /// An integer value of any integer type; negative is an error.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.value(key) else {
            return Ok(None);
        };
        match v.as_i128() {
            Some(i) => u64::try_from(i).map(Some).map_err(|_| {
                invalid(
                    &self.path,
                    format!("metadata key `{key}` is {i}, expected a non-negative integer"),
                )
            }),
            None => Err(self.wrong_type(key, v, "an integer")),
        }
    }

    /// An integer value of any integer type that fits an `i64`.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        let Some(v) = self.value(key) else {
            return Ok(None);
        };
        match v.as_i128() {
            Some(i) => i64::try_from(i).map(Some).map_err(|_| {
                invalid(
                    &self.path,
                    format!(
                        "metadata key `{key}` is {i}, which does not fit a 64-bit signed integer"
                    ),
                )
            }),
            None => Err(self.wrong_type(key, v, "an integer")),
        }
    }

    /// A float value: f32, f64 (rounded to f32) or an integer.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::F32(f)) => Ok(Some(*f)),
            Some(Value::F64(f)) => Ok(Some(*f as f32)),
            Some(v) => match v.as_i128() {
                Some(i) => Ok(Some(i as f32)),
                None => Err(self.wrong_type(key, v, "a number")),
            },
        }
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong_type(key, v, "a bool")),
        }
    }

    /// An array of strings (an empty array of any type reads as empty).
    pub fn get_strings(&self, key: &str) -> Result<Option<&[String]>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Array(Array::Strings(v))) => Ok(Some(v)),
            Some(Value::Array(a)) if a.is_empty() => Ok(Some(&[])),
            Some(v) => Err(self.wrong_type(key, v, "an array of strings")),
        }
    }

    /// An array of numbers as f32: f32, f64 (rounded) or integer elements.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Array(Array::F32(v))) => Ok(Some(v.clone())),
            Some(Value::Array(Array::F64(v))) => Ok(Some(v.iter().map(|&x| x as f32).collect())),
            Some(Value::Array(a)) if a.is_empty() => Ok(Some(Vec::new())),
            Some(v @ Value::Array(a)) => match a.integers() {
                Some(ints) => Ok(Some(ints.into_iter().map(|i| i as f32).collect())),
                None => Err(self.wrong_type(key, v, "an array of numbers")),
            },
            Some(v) => Err(self.wrong_type(key, v, "an array of numbers")),
        }
    }

    /// An array of integers of any integer type, each fitting an `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Array(Array::I32(v))) => Ok(Some(v.clone())),
            Some(Value::Array(a)) if a.is_empty() => Ok(Some(Vec::new())),
            Some(v @ Value::Array(a)) => {
                let Some(ints) = a.integers() else {
                    return Err(self.wrong_type(key, v, "an array of integers"));
                };
                ints.into_iter()
                    .enumerate()
                    .map(|(i, x)| {
                        i32::try_from(x).map_err(|_| {
                            invalid(
                                &self.path,
                                format!("metadata key `{key}`: element {i} is {x}, which does not fit a 32-bit integer"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
            Some(v) => Err(self.wrong_type(key, v, "an array of integers")),
        }
    }

    /// The tensors, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's raw block bytes, straight from the map (empty if `t` does
    /// not describe a range of this file).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        usize::try_from(t.offset)
            .ok()
            .and_then(|start| self.map.get(start..start.checked_add(t.n_bytes)?))
            .unwrap_or(&[])
    }

    /// The tensor's values as f32 (row-major, `t.shape()`), bit-equal to
    /// gguf-py's `dequantize`.
    pub fn dequantize(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        if !t.ggml_type.is_supported() {
            return Err(invalid(
                &self.path,
                format!(
                    "tensor `{}` has type {}, which FineTune cannot read; supported: {}",
                    t.name,
                    t.ggml_type.describe(),
                    GgmlType::supported_names()
                ),
            ));
        }
        quants::dequantize(t.ggml_type, self.tensor_bytes(t), t.n_elements())
            .map_err(|m| invalid(&self.path, format!("tensor `{}`: {m}", t.name)))
    }

    /// An error naming the first tensor of a type FineTune cannot read.
    pub fn ensure_supported(&self) -> Result<()> {
        match self.tensors.iter().find(|t| !t.ggml_type.is_supported()) {
            None => Ok(()),
            Some(t) => Err(invalid(
                &self.path,
                format!(
                    "tensor `{}` has type {}, which FineTune cannot read; supported: {}",
                    t.name,
                    t.ggml_type.describe(),
                    GgmlType::supported_names()
                ),
            )),
        }
    }

    /// How many tensors there are of each type, by GGML id.
    pub fn type_counts(&self) -> Vec<(GgmlType, usize)> {
        let mut counts: Vec<(GgmlType, usize)> = Vec::new();
        for t in &self.tensors {
            match counts.iter_mut().find(|(ty, _)| *ty == t.ggml_type) {
                Some((_, n)) => *n += 1,
                None => counts.push((t.ggml_type, 1)),
            }
        }
        counts.sort_by_key(|(ty, _)| ty.id());
        counts
    }
}

fn invalid(path: &Path, message: String) -> Error {
    Error::Invalid(format!("{}: {message}", path.display()))
}

/// A parsed header.
struct Header {
    version: u32,
    kvs: Vec<(String, Value)>,
    kv_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
}

/// Reads little-endian values, never past the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!(
                "the file ends at byte {} inside {} ({n} bytes needed, {} left)",
                self.buf.len(),
                what(),
                self.left()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], String> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A declared count of items of at least `min_size` bytes each, checked
    /// against the bytes left.
    fn count(&mut self, min_size: usize, what: &dyn Fn() -> String) -> Result<usize, String> {
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(min_size).is_some_and(|b| b <= self.left()));
        fits.ok_or_else(|| {
            format!(
                "{} declares {n} entries, more than the {} bytes left could hold",
                what(),
                self.left()
            )
        })
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, String> {
        let n = self.count(1, &|| format!("the length of {}", what()))?;
        let bytes = self.take(n, what)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: u32, depth: usize, what: &dyn Fn() -> String) -> Result<Value, String> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(what)?[0]),
            1 => Value::I8(self.array::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => Value::Bool(self.bool(what)?),
            8 => Value::String(self.string(what)?),
            9 => Value::Array(self.array_value(depth, what)?),
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            t => {
                return Err(format!(
                    "{} has value type {t}, which GGUF does not define",
                    what()
                ))
            }
        })
    }

    fn bool(&mut self, what: &dyn Fn() -> String) -> Result<bool, String> {
        match self.array::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!(
                "{} is a bool of byte value {b}, not 0 or 1",
                what()
            )),
        }
    }

    fn array_value(&mut self, depth: usize, what: &dyn Fn() -> String) -> Result<Array, String> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!(
                "{} nests arrays more than {MAX_ARRAY_DEPTH} deep",
                what()
            ));
        }
        let ty = self.u32(&|| format!("the element type of {}", what()))?;
        // The smallest encoding of one element, to bound the count.
        let min_size = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            t => {
                return Err(format!(
                    "{} has element type {t}, which GGUF does not define",
                    what()
                ))
            }
        };
        let n = self.count(min_size, what)?;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                const W: usize = std::mem::size_of::<$t>();
                let bytes = self.take(n * W, what)?;
                Array::$variant(
                    bytes
                        .chunks_exact(W)
                        .map(|c| {
                            let mut a = [0u8; W];
                            a.copy_from_slice(c);
                            <$t>::from_le_bytes(a)
                        })
                        .collect(),
                )
            }};
        }
        Ok(match ty {
            0 => Array::U8(self.take(n, what)?.to_vec()),
            1 => fixed!(I8, i8),
            2 => fixed!(U16, u16),
            3 => fixed!(I16, i16),
            4 => fixed!(U32, u32),
            5 => fixed!(I32, i32),
            6 => fixed!(F32, f32),
            7 => Array::Bool(
                (0..n)
                    .map(|i| self.bool(&|| format!("element {i} of {}", what())))
                    .collect::<Result<_, _>>()?,
            ),
            8 => Array::Strings(
                (0..n)
                    .map(|i| self.string(&|| format!("element {i} of {}", what())))
                    .collect::<Result<_, _>>()?,
            ),
            9 => Array::Arrays(
                (0..n)
                    .map(|i| self.array_value(depth + 1, &|| format!("element {i} of {}", what())))
                    .collect::<Result<_, _>>()?,
            ),
            10 => fixed!(U64, u64),
            11 => fixed!(I64, i64),
            _ => fixed!(F64, f64),
        })
    }
}

fn parse(buf: &[u8]) -> Result<Header, String> {
    let mut r = Reader { buf, pos: 0 };
    let magic = r.array::<4>(&|| "the magic number".into())?;
    if magic != MAGIC {
        return Err(format!(
            "not a GGUF file: it starts with bytes {:02x} {:02x} {:02x} {:02x}, not \"GGUF\"",
            magic[0], magic[1], magic[2], magic[3]
        ));
    }
    let version = r.u32(&|| "the version".into())?;
    match version {
        2 | 3 => {}
        1 => return Err("GGUF version 1 is not supported (only versions 2 and 3)".into()),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err(
                "this is a big-endian GGUF file; only little-endian files are supported".into(),
            )
        }
        v => {
            return Err(format!(
                "GGUF version {v} is not supported (only versions 2 and 3)"
            ))
        }
    }
    let n_tensors_raw = r.u64(&|| "the tensor count".into())?;
    let n_kvs_raw = r.u64(&|| "the metadata count".into())?;
    // A metadata entry takes at least 13 bytes (key length, type, a u8);
    // a tensor entry at least 24 (name length, n_dims, type, offset).
    let left = r.left() as u64;
    if n_kvs_raw > left / 13 {
        return Err(format!(
            "the header declares {n_kvs_raw} metadata entries, more than the {left} bytes after it could hold"
        ));
    }
    if n_tensors_raw > left / 24 {
        return Err(format!(
            "the header declares {n_tensors_raw} tensors, more than the {left} bytes after it could hold"
        ));
    }
    let (n_kvs, n_tensors) = (n_kvs_raw as usize, n_tensors_raw as usize);

    let mut kvs = Vec::with_capacity(n_kvs);
    let mut kv_index = HashMap::with_capacity(n_kvs);
    for i in 0..n_kvs {
        let key = r.string(&|| format!("the key of metadata entry {i}"))?;
        let ty = r.u32(&|| format!("the value type of metadata key `{key}`"))?;
        let value = r.value(ty, 0, &|| format!("the value of metadata key `{key}`"))?;
        if kv_index.insert(key.clone(), kvs.len()).is_some() {
            return Err(format!("metadata key `{key}` appears more than once"));
        }
        kvs.push((key, value));
    }

    let alignment = match kv_index.get("general.alignment").map(|&i| &kvs[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_i128() {
            Some(a) if a > 0 && (a as u128).is_power_of_two() && a <= 1 << 30 => a as u64,
            found => {
                let found = found.map_or_else(|| format!("a {}", v.type_name()), |i| i.to_string());
                return Err(format!(
                    "`general.alignment` must be a power of two between 1 and 2^30, not {found}"
                ));
            }
        },
    };

    let mut infos = Vec::with_capacity(n_tensors);
    let mut tensor_index = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = r.string(&|| format!("the name of tensor {i}"))?;
        let n_dims = r.u32(&|| format!("the dimension count of tensor `{name}`"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!(
                "tensor `{name}` has {n_dims} dimensions; GGUF tensors have 1 to {MAX_DIMS}"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for k in 0..n_dims {
            dims.push(r.u64(&|| format!("dimension {k} of tensor `{name}`"))?);
        }
        let type_id = r.u32(&|| format!("the type of tensor `{name}`"))?;
        let offset = r.u64(&|| format!("the data offset of tensor `{name}`"))?;
        if tensor_index.insert(name.clone(), infos.len()).is_some() {
            return Err(format!("tensor `{name}` appears more than once"));
        }
        infos.push((name, dims, type_id, offset));
    }

    let data_offset = (r.pos as u64)
        .checked_next_multiple_of(alignment)
        .ok_or("the tensor data offset overflows")?;
    let file_len = buf.len() as u64;
    let mut tensors = Vec::with_capacity(n_tensors);
    for (name, dims, type_id, rel) in infos {
        let ty = GgmlType::from_id(type_id);
        if let GgmlType::Other(id) = ty {
            return Err(format!(
                "tensor `{name}` has type id {id}, which is no GGML type FineTune knows; supported: {}",
                GgmlType::supported_names()
            ));
        }
        let shown = dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" × ");
        if let Some(k) = dims.iter().position(|&d| d == 0 || d > i32::MAX as u64) {
            return Err(format!(
                "tensor `{name}` has dimension {k} of {}, not between 1 and 2^31 - 1 (dims {shown})",
                dims[k]
            ));
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| usize::try_from(n).is_ok())
            .ok_or_else(|| format!("tensor `{name}` has too many values (dims {shown})"))?;
        let (bs, ts) = (ty.block_size() as u64, ty.type_size() as u64);
        if dims[0] % bs != 0 {
            return Err(format!(
                "tensor `{name}` has rows of {} values, not a multiple of the {bs}-value blocks of {}",
                dims[0],
                ty.name()
            ));
        }
        let n_bytes = (n_elements / bs)
            .checked_mul(ts)
            .filter(|&n| usize::try_from(n).is_ok())
            .ok_or_else(|| format!("tensor `{name}` has too many bytes (dims {shown})"))?;
        let start = data_offset.checked_add(rel);
        let end = start.and_then(|s| s.checked_add(n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => tensors.push(TensorInfo {
                name,
                dims,
                ggml_type: ty,
                offset: start,
                n_bytes: n_bytes as usize,
            }),
            _ => {
                return Err(format!(
                    "tensor `{name}` ({} × {shown}, {n_bytes} bytes at data offset {rel}) lies past the end of the file ({file_len} bytes; data starts at {data_offset})",
                    ty.name()
                ))
            }
        }
    }

    Ok(Header {
        version,
        kvs,
        kv_index,
        tensors,
        tensor_index,
        alignment,
        data_offset,
    })
}
