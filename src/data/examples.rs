//! Tokenized examples kept on disk (in the tokenization cache's layout,
//! see `cache`) and read back per batch: in memory only an index of
//! offsets, lengths and trained-token counts (16 bytes an example, plus 4
//! for a selection such as a validation split), so a file of any size
//! trains in memory that does not grow with it.

use std::fs::File;
use std::sync::Arc;

use super::cache::{Header, Writer};
use super::tokenize::Example;
use crate::error::{Error, Result};

/// Where each example lies in the store, and what batching needs to know
/// of it without reading it.
#[derive(Debug, Default, Clone)]
pub struct Index {
    offsets: Vec<u64>,
    /// Length; the high bit set when the example was truncated.
    lens: Vec<u32>,
    trained: Vec<u32>,
}

const TRUNCATED: u32 = 1 << 31;

impl Index {
    pub(crate) fn push(&mut self, offset: u64, len: u32, trained: u32, truncated: bool) {
        self.offsets.push(offset);
        self.lens.push(len | if truncated { TRUNCATED } else { 0 });
        self.trained.push(trained);
    }
    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }
    pub(crate) fn offset(&self, i: usize) -> u64 {
        self.offsets[i]
    }
    pub(crate) fn raw_len(&self, i: usize) -> u32 {
        self.lens[i]
    }
    pub(crate) fn len_of(&self, i: usize) -> usize {
        (self.lens[i] & !TRUNCATED) as usize
    }
    pub(crate) fn truncated(&self, i: usize) -> bool {
        self.lens[i] & TRUNCATED != 0
    }
    pub(crate) fn trained(&self, i: usize) -> usize {
        self.trained[i] as usize
    }
    fn bytes(&self) -> usize {
        self.offsets.capacity() * 8 + self.lens.capacity() * 4 + self.trained.capacity() * 4
    }
}

/// A file of examples and its index.
pub struct Store {
    file: File,
    index: Index,
    pub(crate) header: Header,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({} examples)", self.index.len())
    }
}

impl Store {
    pub(crate) fn new(file: File, mut index: Index, header: Header) -> Self {
        index.offsets.shrink_to_fit();
        index.lens.shrink_to_fit();
        index.trained.shrink_to_fit();
        Self {
            file,
            index,
            header,
        }
    }

    fn read(&self, i: usize) -> Result<Example> {
        let len = self.index.len_of(i);
        let mut bytes = vec![0u8; len * 5];
        read_at(&self.file, &mut bytes, self.index.offset(i)).map_err(|source| Error::Io {
            path: "the tokenized examples".into(),
            source,
        })?;
        let (tokens, flags) = bytes.split_at(len * 4);
        Ok(Example {
            tokens: tokens
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
            trained: flags.iter().map(|&b| b != 0).collect(),
            truncated: self.index.truncated(i),
        })
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// Examples of a tokenized file (or a selection of them, such as the
/// training part of a split), read from disk when asked for.
#[derive(Clone)]
pub struct Examples {
    store: Arc<Store>,
    /// Which of the store's examples, in order; None for all.
    selection: Option<Arc<[u32]>>,
}

impl Examples {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store: Arc::new(store),
            selection: None,
        }
    }

    /// Examples made in memory, written to a temporary file.
    pub fn from_examples(examples: impl IntoIterator<Item = Example>) -> Result<Self> {
        let mut writer = Writer::anonymous()?;
        for e in examples {
            writer.push(&e)?;
        }
        Ok(Self::new(writer.finish(Header::default(), false)?))
    }

    fn id(&self, i: usize) -> usize {
        match &self.selection {
            Some(s) => s[i] as usize,
            None => i,
        }
    }

    pub fn len(&self) -> usize {
        match &self.selection {
            Some(s) => s.len(),
            None => self.store.index.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tokens of example `i` (without reading it).
    pub fn tokens_len(&self, i: usize) -> usize {
        self.store.index.len_of(self.id(i))
    }

    /// Trained tokens of example `i` (without reading it).
    pub fn trained_tokens(&self, i: usize) -> usize {
        self.store.index.trained(self.id(i))
    }

    /// Whether example `i` was truncated (without reading it).
    pub fn truncated(&self, i: usize) -> bool {
        self.store.index.truncated(self.id(i))
    }

    /// Example `i`, read from disk.
    pub fn get(&self, i: usize) -> Result<Example> {
        self.store.read(self.id(i))
    }

    /// Every example in order, read one at a time (panics on an I/O error
    /// reading the store back; use [`Examples::get`] to handle it).
    pub fn iter(&self) -> impl Iterator<Item = Example> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("reading the tokenized examples back"))
    }

    /// These examples' subset at `positions` (ascending positions in
    /// this selection).
    pub fn select(&self, positions: &[usize]) -> Self {
        let ids: Vec<u32> = positions.iter().map(|&p| self.id(p) as u32).collect();
        Self {
            store: self.store.clone(),
            selection: Some(ids.into()),
        }
    }

    /// Bytes this selection and the index it shares keep in memory.
    pub fn resident_bytes(&self) -> usize {
        self.store.index.bytes() + self.selection.as_ref().map_or(0, |s| s.len() * 4)
    }

    /// Trained tokens of every example (without reading them).
    pub fn total_trained_tokens(&self) -> usize {
        (0..self.len()).map(|i| self.trained_tokens(i)).sum()
    }
}

impl std::fmt::Debug for Examples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Examples({} of {:?})", self.len(), self.store)
    }
}

/// Equal when they hold the same examples (every one is read).
impl PartialEq for Examples {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

/// What batching needs of a set of examples: their lengths (from an index)
/// and, for the examples of a batch, their tokens.
pub trait ExampleSource {
    fn example_count(&self) -> usize;
    fn example_len(&self, i: usize) -> usize;
    fn example_trained(&self, i: usize) -> usize;
    fn example_truncated(&self, i: usize) -> bool;
    fn example(&self, i: usize) -> Result<std::borrow::Cow<'_, Example>>;
}

impl ExampleSource for Examples {
    fn example_count(&self) -> usize {
        self.len()
    }
    fn example_len(&self, i: usize) -> usize {
        self.tokens_len(i)
    }
    fn example_trained(&self, i: usize) -> usize {
        self.trained_tokens(i)
    }
    fn example_truncated(&self, i: usize) -> bool {
        self.truncated(i)
    }
    fn example(&self, i: usize) -> Result<std::borrow::Cow<'_, Example>> {
        self.get(i).map(std::borrow::Cow::Owned)
    }
}

impl ExampleSource for [Example] {
    fn example_count(&self) -> usize {
        self.len()
    }
    fn example_len(&self, i: usize) -> usize {
        self[i].tokens.len()
    }
    fn example_trained(&self, i: usize) -> usize {
        self[i].trained_tokens()
    }
    fn example_truncated(&self, i: usize) -> bool {
        self[i].truncated
    }
    fn example(&self, i: usize) -> Result<std::borrow::Cow<'_, Example>> {
        Ok(std::borrow::Cow::Borrowed(&self[i]))
    }
}

impl ExampleSource for Vec<Example> {
    fn example_count(&self) -> usize {
        self.as_slice().example_count()
    }
    fn example_len(&self, i: usize) -> usize {
        self.as_slice().example_len(i)
    }
    fn example_trained(&self, i: usize) -> usize {
        self.as_slice().example_trained(i)
    }
    fn example_truncated(&self, i: usize) -> bool {
        self.as_slice().example_truncated(i)
    }
    fn example(&self, i: usize) -> Result<std::borrow::Cow<'_, Example>> {
        Ok(std::borrow::Cow::Borrowed(&self[i]))
    }
}
