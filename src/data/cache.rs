//! The tokenization cache: a tokenized file stored under a key made of
//! everything that decides its tokens (see `Tokenization::file`), so the
//! second run over the same data skips parsing, templating and tokenizing.
//! The same layout holds the examples of a run without a cache folder (in
//! an anonymous temporary file): examples are written as they are made and
//! read back per batch, so memory does not grow with the data.
//!
//! Layout (little-endian):
//! - `MAGIC` (8 bytes);
//! - per example, its tokens (u32 each) then its trained flags (u8 each,
//!   0 or 1);
//! - the index: per example its data offset (u64), its length (u32, the
//!   high bit set when it was truncated) and its trained tokens (u32);
//! - a JSON header (counts and skipped records);
//! - a trailer: index offset, header offset, header length, example count
//!   (u64 each) and `END` (8 bytes).
//!
//! A file that does not add up (sizes, offsets, flags, counts) is rebuilt.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::examples::{Index, Store};
use super::records::Skipped;
use super::tokenize::Example;
use crate::error::{Error, Result};

/// Bumped whenever tokenization or this layout changes.
pub const VERSION: u32 = 3;

const MAGIC: &[u8; 8] = b"FTTOK02\n";
const END: &[u8; 8] = b"FTTOKEND";
const TRAILER: u64 = 4 * 8 + 8;
const ENTRY: u64 = 16;
/// The longest example the layout takes (the high bit marks truncation).
const MAX_LEN: u32 = (1 << 31) - 1;

/// What the examples leave out: the rest of a `TokenizedFile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub examples: usize,
    pub skipped_empty: usize,
    pub skipped: Vec<Skipped>,
    pub chat_records: usize,
    /// Preference pairs kept, each as two examples (chosen, rejected).
    #[serde(default)]
    pub pairs: usize,
}

enum Target {
    /// Published at `path` when finished (a named temporary beside it).
    Named(tempfile::NamedTempFile, PathBuf),
    Anonymous,
}

/// Examples appended as they are made.
pub struct Writer {
    out: BufWriter<File>,
    target: Target,
    pos: u64,
    index: Index,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

impl Writer {
    /// A writer that publishes the finished file at `path` (its folder is
    /// made); None when the folder cannot be written (then use
    /// [`Writer::anonymous`]).
    pub fn cached(path: &Path) -> Option<Self> {
        let dir = path.parent()?;
        std::fs::create_dir_all(dir).ok()?;
        let tmp = tempfile::Builder::new()
            .prefix(".tokenizing-")
            .tempfile_in(dir)
            .ok()?;
        let file = tmp.reopen().ok()?;
        Self::start(file, Target::Named(tmp, path.into())).ok()
    }

    /// A writer into an unnamed temporary file, gone with the process.
    pub fn anonymous() -> Result<Self> {
        let file = tempfile::tempfile().map_err(io(&std::env::temp_dir()))?;
        Self::start(file, Target::Anonymous)
    }

    fn start(file: File, target: Target) -> Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).map_err(io(&std::env::temp_dir()))?;
        Ok(Self {
            out,
            target,
            pos: MAGIC.len() as u64,
            index: Index::default(),
        })
    }

    fn fail(&self) -> impl Fn(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: match &self.target {
                Target::Named(tmp, _) => tmp.path().into(),
                Target::Anonymous => std::env::temp_dir(),
            },
            source,
        }
    }

    pub fn push(&mut self, example: &Example) -> Result<()> {
        let len = example.tokens.len();
        if len > MAX_LEN as usize || example.trained.len() != len {
            return Err(Error::Invalid(format!(
                "an example of {len} tokens is more than the tokenization cache holds"
            )));
        }
        let mut bytes = Vec::with_capacity(len * 5);
        for t in &example.tokens {
            bytes.extend(t.to_le_bytes());
        }
        bytes.extend(example.trained.iter().map(|&t| t as u8));
        self.out.write_all(&bytes).map_err(self.fail())?;
        self.index.push(
            self.pos,
            len as u32,
            example.trained_tokens() as u32,
            example.truncated,
        );
        self.pos += bytes.len() as u64;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// Writes the index and `header`, publishes the file (when named and
    /// `publish`) and
    /// returns the examples, read from it from now on.
    pub fn finish(mut self, mut header: Header, publish: bool) -> Result<Store> {
        header.version = VERSION;
        header.examples = self.index.len();
        let index_at = self.pos;
        let mut bytes = Vec::with_capacity(self.index.len() * ENTRY as usize);
        for i in 0..self.index.len() {
            bytes.extend(self.index.offset(i).to_le_bytes());
            bytes.extend(self.index.raw_len(i).to_le_bytes());
            bytes.extend((self.index.trained(i) as u32).to_le_bytes());
        }
        let json = serde_json::to_vec(&header).expect("serializable");
        let header_at = index_at + bytes.len() as u64;
        bytes.extend(&json);
        for n in [
            index_at,
            header_at,
            json.len() as u64,
            header.examples as u64,
        ] {
            bytes.extend(n.to_le_bytes());
        }
        bytes.extend(END);
        self.out.write_all(&bytes).map_err(self.fail())?;
        self.out.flush().map_err(self.fail())?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io(&std::env::temp_dir()))?;
        if let (Target::Named(tmp, path), true) = (self.target, publish) {
            // A cache that cannot be published only costs time next run;
            // the examples are read from the open file either way.
            let _ = tmp.persist(&path);
        }
        Ok(Store::new(file, self.index, header))
    }
}

fn u64_at(bytes: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
}

/// The cached examples, or None when absent or not a valid cache file of
/// this version (then it is rebuilt). Every flag is checked (one
/// sequential read, not kept in memory).
pub fn load(path: &Path) -> Option<Store> {
    let mut file = File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    if size < MAGIC.len() as u64 + TRAILER {
        return None;
    }
    let mut magic = [0u8; 8];
    file.read_exact(&mut magic).ok()?;
    if &magic != MAGIC {
        return None;
    }
    let mut trailer = [0u8; TRAILER as usize];
    file.seek(SeekFrom::Start(size - TRAILER)).ok()?;
    file.read_exact(&mut trailer).ok()?;
    if &trailer[32..] != END {
        return None;
    }
    let (index_at, header_at, header_len, count) = (
        u64_at(&trailer, 0),
        u64_at(&trailer, 1),
        u64_at(&trailer, 2),
        u64_at(&trailer, 3),
    );
    if index_at < MAGIC.len() as u64
        || count.checked_mul(ENTRY)?.checked_add(index_at)? != header_at
        || header_at.checked_add(header_len)?.checked_add(TRAILER)? != size
    {
        return None;
    }
    let mut json = vec![0u8; header_len as usize];
    file.seek(SeekFrom::Start(header_at)).ok()?;
    file.read_exact(&mut json).ok()?;
    let header: Header = serde_json::from_slice(&json).ok()?;
    if header.version != VERSION || header.examples as u64 != count {
        return None;
    }
    // The index: offsets must tile the data region exactly.
    file.seek(SeekFrom::Start(index_at)).ok()?;
    let mut reader = BufReader::with_capacity(1 << 20, &mut file);
    let mut index = Index::default();
    let mut expected = MAGIC.len() as u64;
    let mut entry = [0u8; ENTRY as usize];
    for _ in 0..count {
        reader.read_exact(&mut entry).ok()?;
        let offset = u64::from_le_bytes(entry[..8].try_into().ok()?);
        let raw_len = u32::from_le_bytes(entry[8..12].try_into().ok()?);
        let trained = u32::from_le_bytes(entry[12..].try_into().ok()?);
        let len = raw_len & MAX_LEN;
        if offset != expected || trained > len {
            return None;
        }
        expected += 5 * len as u64;
        index.push(offset, len, trained, raw_len & !MAX_LEN != 0);
    }
    if expected != index_at {
        return None;
    }
    drop(reader);
    // The flags: 0 or 1, as many ones as the index says.
    file.seek(SeekFrom::Start(MAGIC.len() as u64)).ok()?;
    let mut reader = BufReader::with_capacity(1 << 20, &mut file);
    let mut buf = Vec::new();
    for i in 0..index.len() {
        let len = index.len_of(i) as u64;
        std::io::copy(&mut (&mut reader).take(4 * len), &mut std::io::sink()).ok()?;
        buf.resize(len as usize, 0);
        reader.read_exact(&mut buf).ok()?;
        if buf.iter().any(|&b| b > 1) || buf.iter().filter(|&&b| b == 1).count() != index.trained(i)
        {
            return None;
        }
    }
    drop(reader);
    Some(Store::new(file, index, header))
}
