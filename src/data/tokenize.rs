//! Records → token ids plus a mask of the tokens the loss is computed on.
//!
//! Chat records are rendered with the chat template; the assistant's turns
//! (their content and the template's end-of-turn marker) are found by
//! rendering each prefix of the conversation, and tokens are marked through
//! the tokenizer's byte offsets — so masking follows whatever template is used.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cache::{self, Header, Writer};
use super::examples::{Examples, Store};
use super::formats::{self, Digest, Format, TextPieces};
use super::preference::Pair;
use super::records::{train_file, ReadOptions, Record, RecordStream, Skipped};
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
    /// On disk (the cache file, or a temporary one), read per batch.
    pub examples: Examples,
    /// Records with nothing left to learn after truncation (kept out).
    pub skipped_empty: usize,
    /// Records that could not be read (with `--on-bad-record skip`).
    pub skipped: Vec<Skipped>,
    /// Conversations among the records (the template matters only then).
    pub chat_records: usize,
    /// Preference pairs: example 2i is pair i's chosen answer, 2i + 1 its
    /// rejected one (0 for other data).
    pub pairs: usize,
    /// Whether the examples came from the tokenization cache.
    pub from_cache: bool,
}

impl TokenizedFile {
    fn of(source: PathBuf, store: Store, from_cache: bool) -> Self {
        let header = store.header.clone();
        Self {
            source,
            examples: Examples::new(store),
            skipped_empty: header.skipped_empty,
            skipped: header.skipped,
            chat_records: header.chat_records,
            pairs: header.pairs,
            from_cache,
        }
    }
}

/// How records become examples.
#[derive(Clone, Copy)]
pub struct Tokenization<'a> {
    pub template: Option<&'a ChatTemplate>,
    pub tokenizer: &'a Tokenizer,
    pub policy: MaskPolicy,
    pub max_length: usize,
}

/// Records tokenized at a time (in parallel): what stays in memory while a
/// file is read is a chunk of records and their examples.
pub const CHUNK_RECORDS: usize = 2048;
/// A `.txt` corpus is tokenized in pieces of about this many bytes, cut at
/// line ends.
pub const CORPUS_PIECE_BYTES: usize = 1 << 20;

impl Tokenization<'_> {
    /// Reads and tokenizes `path` as a stream: records in chunks of
    /// [`CHUNK_RECORDS`], tokenized in parallel (errors name the record),
    /// each example written to disk as it comes and read back when a batch
    /// needs it. With `cache_dir`, the file is kept there keyed by the
    /// file's bytes, the template, the tokenizer and these settings, so the
    /// same data starts at once the next time; without, it is a temporary
    /// file gone with the process.
    pub fn file(
        &self,
        path: &Path,
        read: &ReadOptions,
        cache_dir: Option<&Path>,
    ) -> Result<TokenizedFile> {
        let source = train_file(path)?;
        let format = Format::of(&source)?;
        if format == Format::Text {
            // Checked by the record reader otherwise.
            RecordStream::check_options(read)?;
        }
        // One pass for the key and the whole-file checks (UTF-8, empty).
        let digest = formats::scan(&source)?;
        let cache_path =
            cache_dir.map(|dir| dir.join(format!("{}.bin", self.cache_key(&digest, read))));
        if let Some(hit) = cache_path.as_deref().and_then(cache::load) {
            return Ok(TokenizedFile::of(source, hit, true));
        }
        let mut writer = match cache_path.as_deref().and_then(Writer::cached) {
            Some(w) => w,
            None => Writer::anonymous()?,
        };
        let mut header = Header::default();
        let read_digest = if format == Format::Text {
            self.corpus_stream(&source, &mut writer, &mut header)?
        } else {
            self.record_stream(&source, read, &mut writer, &mut header)?
        };
        // A file changed while it was read is not cached under the old key.
        let publish = read_digest.is_none_or(|d| d == digest);
        let store = writer.finish(header, publish)?;
        Ok(TokenizedFile::of(source, store, false))
    }

    fn record_stream(
        &self,
        source: &Path,
        read: &ReadOptions,
        writer: &mut Writer,
        header: &mut Header,
    ) -> Result<Option<Digest>> {
        let mut stream = RecordStream::open_scanned(source, read)?;
        let mut done = 0;
        let mut first_is_pair = None;
        loop {
            let chunk: Vec<Record> = stream.by_ref().take(CHUNK_RECORDS).collect::<Result<_>>()?;
            if chunk.is_empty() {
                break;
            }
            header.chat_records += chunk
                .iter()
                .filter(|r| {
                    matches!(r, Record::Chat(_))
                        || matches!(r, Record::Preference(p) if matches!(**p, Pair::Chat { .. }))
                })
                .count();
            let results: Vec<Result<Vec<Example>>> =
                chunk.par_iter().map(|record| self.record(record)).collect();
            for (i, result) in results.into_iter().enumerate() {
                let at = done + i + 1;
                let produced = result.map_err(|e| {
                    Error::Invalid(format!("{}: record {at}: {e}", source.display()))
                })?;
                let is_pair = matches!(chunk[i], Record::Preference(_));
                // A file is pairs throughout or not at all: batches of
                // pairs rely on examples 2i and 2i + 1 being one pair.
                if *first_is_pair.get_or_insert(is_pair) != is_pair {
                    return Err(Error::Invalid(format!(
                        "{}: record {at}: {} (a dataset is either preference pairs or examples to learn, not both)",
                        source.display(),
                        if is_pair {
                            "a preference pair (`chosen` / `rejected`) among records that are not"
                        } else {
                            "not a preference pair, among records that are (`chosen` / `rejected`)"
                        }
                    )));
                }
                if is_pair {
                    self.keep_pair(produced, writer, header)?;
                } else {
                    for example in produced {
                        self.keep(example, writer, header)?;
                    }
                }
            }
            done += chunk.len();
        }
        let digest = stream.digest();
        header.skipped = stream.finish()?;
        Ok(digest)
    }

    fn keep(&self, example: Example, writer: &mut Writer, header: &mut Header) -> Result<()> {
        if example.trained_tokens() > 0 && example.tokens.len() > 1 {
            writer.push(&example)
        } else {
            header.skipped_empty += 1;
            Ok(())
        }
    }

    /// Both sides of a pair, or neither when one has nothing to learn left
    /// after truncation.
    fn keep_pair(
        &self,
        sides: Vec<Example>,
        writer: &mut Writer,
        header: &mut Header,
    ) -> Result<()> {
        let usable = |e: &Example| e.trained_tokens() > 0 && e.tokens.len() > 1;
        if sides.len() == 2 && sides.iter().all(usable) {
            header.pairs += 1;
            sides.iter().try_for_each(|e| writer.push(e))
        } else {
            header.skipped_empty += 1;
            Ok(())
        }
    }

    /// A `.txt` corpus as consecutive windows of `max_length` tokens over
    /// the whole text, every token trained; the text is tokenized in pieces
    /// of [`CORPUS_PIECE_BYTES`] cut at line ends (in parallel), so a token
    /// never spans a piece's end (where a whole-text tokenization could
    /// have merged across it, or a tokenizer that marks the start of a
    /// text marks each piece's).
    fn corpus_stream(
        &self,
        source: &Path,
        writer: &mut Writer,
        header: &mut Header,
    ) -> Result<Option<Digest>> {
        let mut pieces = TextPieces::open_scanned(source, CORPUS_PIECE_BYTES)?;
        let (bos, width) = self.window();
        let at_once = rayon::current_num_threads().max(1) * 2;
        let mut carry: Vec<u32> = Vec::new();
        loop {
            let batch: Vec<String> = pieces.by_ref().take(at_once).collect::<Result<_>>()?;
            if batch.is_empty() {
                break;
            }
            let encoded: Vec<Result<Vec<u32>>> =
                batch.par_iter().map(|t| self.tokenizer.encode(t)).collect();
            for tokens in encoded {
                let tokens = tokens
                    .map_err(|e| Error::Invalid(format!("{}: record 1: {e}", source.display())))?;
                carry.extend(tokens);
                let mut start = 0;
                while carry.len() - start >= width {
                    self.keep(window(bos, &carry[start..start + width]), writer, header)?;
                    start += width;
                }
                carry.drain(..start);
            }
        }
        if !carry.is_empty() {
            self.keep(window(bos, &carry), writer, header)?;
        }
        Ok(pieces.digest())
    }

    /// The BOS a corpus window starts with, and the tokens of text it holds.
    fn window(&self) -> (Option<u32>, usize) {
        // Models that expect a BOS before a text (Gemma) get one per window.
        let bos = self.tokenizer.text_bos();
        (bos, self.max_length.max(2) - usize::from(bos.is_some()))
    }

    fn cache_key(&self, digest: &Digest, read: &ReadOptions) -> String {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(cache::VERSION.to_le_bytes());
        h.update(digest);
        h.update(self.template.map_or("", |t| t.source.as_str()).as_bytes());
        h.update(self.tokenizer.fingerprint().as_bytes());
        h.update(format!("bos {:?}", self.tokenizer.text_bos()).as_bytes());
        h.update(format!("{:?}|{}|{:?}", self.policy, self.max_length, read).as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// One record's examples: one, or several for a corpus.
    pub fn record(&self, record: &Record) -> Result<Vec<Example>> {
        match record {
            Record::Corpus(text) => self.corpus(text),
            Record::Preference(pair) => self.pair(pair),
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

    /// A pair's two examples, chosen then rejected, each trained on its
    /// answer only (the prompt is context).
    fn pair(&self, pair: &Pair) -> Result<Vec<Example>> {
        let sides: Vec<(Record, usize)> = match (pair, self.template) {
            (
                Pair::Chat {
                    prompt,
                    chosen,
                    rejected,
                },
                _,
            ) => [chosen, rejected]
                .into_iter()
                .map(|side| {
                    (
                        Record::Chat([prompt.clone(), side.clone()].concat()),
                        prompt.len(),
                    )
                })
                .collect(),
            (
                Pair::Text {
                    system,
                    prompt,
                    chosen,
                    rejected,
                },
                Some(_),
            ) => {
                let mut head = Vec::new();
                if let Some(system) = system {
                    head.push(Message::new("system", system));
                }
                head.push(Message::new("user", prompt));
                [chosen, rejected]
                    .into_iter()
                    .map(|answer| {
                        let mut messages = head.clone();
                        messages.push(Message::new("assistant", answer));
                        (Record::Chat(messages), head.len())
                    })
                    .collect()
            }
            (
                Pair::Text {
                    system,
                    prompt,
                    chosen,
                    rejected,
                },
                None,
            ) => {
                let prompt = match system {
                    Some(system) => format!("{system}\n\n{prompt}"),
                    None => prompt.clone(),
                };
                [chosen, rejected]
                    .into_iter()
                    .map(|answer| {
                        let record = Record::Completion {
                            prompt: prompt.clone(),
                            completion: answer.clone(),
                        };
                        (record, 0)
                    })
                    .collect()
            }
        };
        sides
            .iter()
            .map(|(record, answer_from)| {
                tokenize_from(
                    record,
                    self.template,
                    self.tokenizer,
                    MaskPolicy::Completions,
                    self.max_length,
                    *answer_from,
                )
            })
            .collect()
    }

    /// A corpus cut into consecutive windows of `max_length` tokens, every
    /// token trained.
    fn corpus(&self, text: &str) -> Result<Vec<Example>> {
        let tokens = self.tokenizer.encode(text)?;
        let (bos, width) = self.window();
        Ok(tokens
            .chunks(width)
            .map(|chunk| window(bos, chunk))
            .collect())
    }
}

fn window(bos: Option<u32>, chunk: &[u32]) -> Example {
    let mut tokens: Vec<u32> = bos.into_iter().collect();
    let mut trained = vec![false; tokens.len()];
    tokens.extend(chunk);
    trained.resize(tokens.len(), true);
    Example {
        tokens,
        trained,
        truncated: false,
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

/// Splits off `fraction` of the examples for validation, shuffled with
/// `seed` (each part keeps the file's order; nothing is read).
pub fn split_examples(examples: Examples, fraction: f64, seed: u64) -> (Examples, Examples) {
    split_units(examples, 1, fraction, seed)
}

/// [`split_examples`] for preference pairs: whole pairs (examples 2i and
/// 2i + 1) go to one side.
pub fn split_pairs(examples: Examples, fraction: f64, seed: u64) -> (Examples, Examples) {
    split_units(examples, 2, fraction, seed)
}

fn split_units(examples: Examples, unit: usize, fraction: f64, seed: u64) -> (Examples, Examples) {
    use rand::{seq::SliceRandom, SeedableRng};
    let n = examples.len() / unit;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let n_valid = ((n as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    let n_valid = n_valid.min(n.saturating_sub(1));
    let mut is_valid = vec![false; n];
    for &i in &order[..n_valid] {
        is_valid[i] = true;
    }
    drop(order);
    let (valid, train): (Vec<usize>, Vec<usize>) = (0..n * unit).partition(|&i| is_valid[i / unit]);
    (examples.select(&train), examples.select(&valid))
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
    tokenize_from(record, template, tokenizer, policy, max_length, 0)
}

/// [`tokenize_record`], a chat's assistant messages before message
/// `trained_from` being context (a preference pair's shared prompt).
fn tokenize_from(
    record: &Record,
    template: Option<&ChatTemplate>,
    tokenizer: &Tokenizer,
    policy: MaskPolicy,
    max_length: usize,
    trained_from: usize,
) -> Result<Example> {
    let (text, spans) = match record {
        Record::Chat(messages) => {
            let template = template.ok_or_else(|| {
                Error::Invalid("chat records need a chat template, and the model has none".into())
            })?;
            let from = if policy == MaskPolicy::LastTurn {
                messages
                    .iter()
                    .rposition(|m| m.role == "assistant")
                    .unwrap_or(0)
            } else {
                trained_from
            };
            render_chat(template, messages, from)?
        }
        Record::Preference(_) => {
            return Err(Error::Invalid(
                "a preference pair makes two examples (Tokenization::record)".into(),
            ))
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

/// The rendered conversation and the byte spans of the assistant's turns
/// from message `trained_from` on.
fn render_chat(
    template: &ChatTemplate,
    messages: &[Message],
    trained_from: usize,
) -> Result<(String, Vec<(usize, usize)>)> {
    let full = template.render(messages, false)?;
    let mut spans = Vec::new();
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
        if i >= trained_from {
            spans.push(span);
        }
    }
    Ok((full, spans))
}
