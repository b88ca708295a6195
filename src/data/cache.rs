//! The tokenization cache: a tokenized file stored under a key made of
//! everything that decides its tokens (see `Tokenization::file`), so the
//! second run over the same data skips parsing, templating and tokenizing.
//!
//! Layout: one JSON header line (counts and skipped records), then per
//! example its length (u32), whether it was truncated (u8), its tokens
//! (u32 each) and its trained flags (u8 each), little-endian.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::records::Skipped;
use super::tokenize::{Example, TokenizedFile};
use crate::error::Result;

/// Bumped whenever tokenization or this layout changes.
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    examples: usize,
    skipped_empty: usize,
    skipped: Vec<Skipped>,
    chat_records: usize,
}

pub fn store(path: &Path, file: &TokenizedFile) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| crate::Error::Io {
            path: dir.into(),
            source,
        })?;
    }
    let header = Header {
        version: VERSION,
        examples: file.examples.len(),
        skipped_empty: file.skipped_empty,
        skipped: file.skipped.clone(),
        chat_records: file.chat_records,
    };
    let mut bytes = serde_json::to_vec(&header).expect("serializable");
    bytes.push(b'\n');
    for e in &file.examples {
        bytes.extend((e.tokens.len() as u32).to_le_bytes());
        bytes.push(e.truncated as u8);
        for t in &e.tokens {
            bytes.extend(t.to_le_bytes());
        }
        bytes.extend(e.trained.iter().map(|&t| t as u8));
    }
    crate::files::write_atomic(path, &bytes)
}

/// The cached file, or None when absent or unreadable (then it is rebuilt).
pub fn load(path: &Path, source: &Path) -> Option<TokenizedFile> {
    let bytes = std::fs::read(path).ok()?;
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let header: Header = serde_json::from_slice(&bytes[..newline]).ok()?;
    if header.version != VERSION {
        return None;
    }
    let mut rest = &bytes[newline + 1..];
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    let mut examples = Vec::with_capacity(header.examples);
    for _ in 0..header.examples {
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let truncated = take(1)?[0] != 0;
        let tokens = take(4 * len)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let trained = take(len)?.iter().map(|&b| b != 0).collect();
        examples.push(Example {
            tokens,
            trained,
            truncated,
        });
    }
    Some(TokenizedFile {
        source: source.into(),
        examples,
        skipped_empty: header.skipped_empty,
        skipped: header.skipped,
        chat_records: header.chat_records,
        from_cache: true,
    })
}
