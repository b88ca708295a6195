//! Records → token ids plus a mask of the tokens the loss is computed on.
//!
//! Chat records are rendered with the chat template; the assistant's turns
//! (their content and the template's end-of-turn marker) are found by
//! rendering each prefix of the conversation, and tokens are marked through
//! the tokenizer's byte offsets — so masking follows whatever template is used.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cache;
use super::records::{read_records, train_file, ReadOptions, Record, Skipped};
use crate::chat_template::{ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// A tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub tokens: Vec<u32>,
    /// `true` where the token is a target of the loss.
    pub trained: Vec<bool>,
    /// Whether the example was cut to the maximum length.
    pub truncated: bool,
}

impl Example {
    pub fn trained_tokens(&self) -> usize {
        self.trained.iter().filter(|&&t| t).count()
    }
}

/// A file's examples, ready for batching.
#[derive(Debug, Clone)]
pub struct TokenizedFile {
    /// The file read.
    pub source: PathBuf,
    pub examples: Vec<Example>,
    /// Records with nothing left to learn after truncation (kept out).
    pub skipped_empty: usize,
    /// Records that could not be read (with `--on-bad-record skip`).
    pub skipped: Vec<Skipped>,
    /// Conversations among the records (the template matters only then).
    pub chat_records: usize,
    /// Whether the examples came from the tokenization cache.
    pub from_cache: bool,
}

/// How records become examples.
#[derive(Clone, Copy)]
pub struct Tokenization<'a> {
    pub template: Option<&'a ChatTemplate>,
    pub tokenizer: &'a Tokenizer,
    pub policy: MaskPolicy,
    pub max_length: usize,
}

impl Tokenization<'_> {
    /// Reads and tokenizes every record of `path` in parallel (errors name
    /// the record). With `cache_dir`, the result is kept there keyed by the
    /// file's bytes, the template, the tokenizer and these settings, so the
    /// same data starts at once the next time.
    pub fn file(
        &self,
        path: &Path,
        read: &ReadOptions,
        cache_dir: Option<&Path>,
    ) -> Result<TokenizedFile> {
        let source = train_file(path)?;
        let cache_path = match cache_dir {
            Some(dir) => Some(dir.join(format!("{}.bin", self.cache_key(&source, read)?))),
            None => None,
        };
        if let Some(hit) = cache_path.as_deref().and_then(|p| cache::load(p, &source)) {
            return Ok(hit);
        }
        let set = read_records(&source, read)?;
        let results: Vec<Result<Vec<Example>>> = set
            .records
            .par_iter()
            .map(|record| self.record(record))
            .collect();
        let mut examples = Vec::with_capacity(set.records.len());
        let mut skipped_empty = 0;
        for (i, result) in results.into_iter().enumerate() {
            let produced = result.map_err(|e| {
                Error::Invalid(format!("{}: record {}: {e}", source.display(), i + 1))
            })?;
            for example in produced {
                if example.trained_tokens() > 0 && example.tokens.len() > 1 {
                    examples.push(example);
                } else {
                    skipped_empty += 1;
                }
            }
        }
        let chat_records = set
            .records
            .iter()
            .filter(|r| matches!(r, Record::Chat(_)))
            .count();
        let file = TokenizedFile {
            source,
            examples,
            skipped_empty,
            skipped: set.skipped,
            chat_records,
            from_cache: false,
        };
        if let Some(p) = &cache_path {
            // A cache that cannot be written only costs time next run.
            let _ = cache::store(p, &file);
        }
        Ok(file)
    }

    fn cache_key(&self, source: &Path, read: &ReadOptions) -> Result<String> {
        use sha2::{Digest, Sha256};
        let bytes = std::fs::read(source).map_err(|e| Error::Io {
            path: source.into(),
            source: e,
        })?;
        let mut h = Sha256::new();
        h.update(cache::VERSION.to_le_bytes());
        h.update(&bytes);
        h.update(self.template.map_or("", |t| t.source.as_str()).as_bytes());
        h.update(self.tokenizer.fingerprint().as_bytes());
        h.update(format!("bos {:?}", self.tokenizer.text_bos()).as_bytes());
        h.update(format!("{:?}|{}|{:?}", self.policy, self.max_length, read).as_bytes());
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// One record's examples: one, or several for a corpus.
    pub fn record(&self, record: &Record) -> Result<Vec<Example>> {
        match record {
            Record::Corpus(text) => self.corpus(text),
            _ => tokenize_record(
                record,
                self.template,
                self.tokenizer,
                self.policy,
                self.max_length,
            )
            .map(|e| vec![e]),
        }
    }

    /// A corpus cut into consecutive windows of `max_length` tokens, every
    /// token trained.
    fn corpus(&self, text: &str) -> Result<Vec<Example>> {
        let tokens = self.tokenizer.encode(text)?;
        // Models that expect a BOS before a text (Gemma) get one per window.
        let bos = self.tokenizer.text_bos();
        let width = self.max_length.max(2) - usize::from(bos.is_some());
        Ok(tokens
            .chunks(width)
            .map(|chunk| {
                let mut tokens: Vec<u32> = bos.into_iter().collect();
                let mut trained = vec![false; tokens.len()];
                tokens.extend(chunk);
                trained.resize(tokens.len(), true);
                Example {
                    tokens,
                    trained,
                    truncated: false,
                }
            })
            .collect())
    }
}

/// Reads and tokenizes every record of `path` (no cache).
pub fn tokenize_file(
    path: &Path,
    template: Option<&ChatTemplate>,
    tokenizer: &Tokenizer,
    policy: MaskPolicy,
    max_length: usize,
) -> Result<TokenizedFile> {
    Tokenization {
        template,
        tokenizer,
        policy,
        max_length,
    }
    .file(path, &ReadOptions::default(), None)
}

/// Splits off `fraction` of the examples for validation, shuffled with `seed`.
pub fn split_examples(
    examples: Vec<Example>,
    fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    use rand::{seq::SliceRandom, SeedableRng};
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let n_valid = ((examples.len() as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    let n_valid = n_valid.min(examples.len().saturating_sub(1));
    let mut is_valid = vec![false; examples.len()];
    for &i in &order[..n_valid] {
        is_valid[i] = true;
    }
    let (valid, train): (Vec<_>, Vec<_>) =
        examples.into_iter().zip(is_valid).partition(|(_, v)| *v);
    (
        train.into_iter().map(|(e, _)| e).collect(),
        valid.into_iter().map(|(e, _)| e).collect(),
    )
}

/// The example's text in runs of trained (`true`) and context tokens.
pub fn preview(example: &Example, tokenizer: &Tokenizer) -> Result<Vec<(String, bool)>> {
    let mut parts: Vec<(String, bool)> = Vec::new();
    let mut start = 0;
    for i in 1..=example.tokens.len() {
        if i == example.tokens.len() || example.trained[i] != example.trained[start] {
            let text = tokenizer.decode_with_special(&example.tokens[start..i])?;
            parts.push((text, example.trained[start]));
            start = i;
        }
    }
    Ok(parts)
}

/// Which tokens to learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskPolicy {
    /// Assistant turns / completions only (the default for chat data).
    #[default]
    Completions,
    /// Only the last assistant turn of each conversation.
    LastTurn,
    /// Every token.
    All,
}

impl std::str::FromStr for MaskPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "completions" => Ok(Self::Completions),
            "last_turn" | "last-turn" => Ok(Self::LastTurn),
            "all" => Ok(Self::All),
            _ => Err(format!("`{s}`: expected completions, last_turn or all")),
        }
    }
}

pub fn tokenize_record(
    record: &Record,
    template: Option<&ChatTemplate>,
    tokenizer: &Tokenizer,
    policy: MaskPolicy,
    max_length: usize,
) -> Result<Example> {
    let (text, spans) = match record {
        Record::Chat(messages) => {
            let template = template.ok_or_else(|| {
                Error::Invalid("chat records need a chat template, and the model has none".into())
            })?;
            render_chat(template, messages, policy == MaskPolicy::LastTurn)?
        }
        Record::Completion { prompt, completion } => {
            let text = format!("{prompt}{completion}");
            (text.clone(), vec![(prompt.len(), text.len())])
        }
        Record::Text(text) | Record::Corpus(text) => (text.clone(), vec![(0, text.len())]),
    };
    let (mut tokens, offsets) = tokenizer.encode_with_offsets(&text)?;
    let mut trained: Vec<bool> = offsets
        .iter()
        .map(|&(start, end)| {
            policy == MaskPolicy::All
                || spans
                    .iter()
                    .any(|&(s, e)| start < e && end > s && start >= s)
        })
        .collect();
    // Models that expect a BOS before a text get it (chat templates write
    // their own); it is context, never a target.
    if !matches!(record, Record::Chat(_)) {
        if let Some(bos) = tokenizer.text_bos() {
            tokens.insert(0, bos);
            trained.insert(0, false);
        }
    }
    // Completions end where the model should stop: learn the eos token too.
    if matches!(
        record,
        Record::Completion { .. } | Record::Text(_) | Record::Corpus(_)
    ) {
        if let Some(eos) = tokenizer
            .eos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t))
        {
            tokens.push(eos);
            trained.push(true);
        }
    }
    let truncated = tokens.len() > max_length;
    tokens.truncate(max_length);
    trained.truncate(max_length);
    Ok(Example {
        tokens,
        trained,
        truncated,
    })
}

/// The rendered conversation and the byte spans of the assistant's turns.
fn render_chat(
    template: &ChatTemplate,
    messages: &[Message],
    last_turn_only: bool,
) -> Result<(String, Vec<(usize, usize)>)> {
    let full = template.render(messages, false)?;
    let mut spans = Vec::new();
    let last = messages.iter().rposition(|m| m.role == "assistant");
    // Where the previous assistant turn ended in `full`.
    let mut cursor = 0;
    for (i, message) in messages.iter().enumerate() {
        if message.role != "assistant" {
            continue;
        }
        let before = template.render(&messages[..i], true)?;
        let through = template.render(&messages[..=i], false)?;
        let incremental = full.starts_with(&before)
            && full.starts_with(&through)
            && through.len() >= before.len()
            && before.len() >= cursor;
        let span = if incremental {
            (before.len(), through.len())
        } else {
            // Some templates render a prefix differently from the whole
            // (a default system prompt that a conversation opening with
            // the assistant does not get): find the reply itself after the
            // previous one, plus the end-of-turn text the template writes
            // after it.
            let reply = message.content.trim();
            let start = full[cursor..].find(reply).map(|p| p + cursor).ok_or_else(|| {
                Error::Invalid(format!(
                    "cannot locate assistant message {} in the rendered conversation (the template changes its text)",
                    i + 1
                ))
            })?;
            let mut end = start + reply.len();
            if let Some(k) = through.rfind(reply) {
                let marker = &through[k + reply.len()..];
                if full[end..].starts_with(marker) {
                    end += marker.len();
                }
            }
            (start, end)
        };
        cursor = span.1;
        if !last_turn_only || Some(i) == last {
            spans.push(span);
        }
    }
    Ok((full, spans))
}
