//! Records → token ids plus a mask of the tokens the loss is computed on.
//!
//! Chat records are rendered with the chat template; the assistant's turns
//! (their content and the template's end-of-turn marker) are found by
//! rendering each prefix of the conversation, and tokens are marked through
//! the tokenizer's byte offsets — so masking follows whatever template is used.

use crate::chat_template::{ChatTemplate, Message};
use crate::data::Record;
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
    pub examples: Vec<Example>,
    /// Records with nothing left to learn after truncation (kept out).
    pub skipped_empty: usize,
}

/// Reads and tokenizes every record of `path` (errors name the record).
pub fn tokenize_file(
    path: &std::path::Path,
    template: Option<&ChatTemplate>,
    tokenizer: &Tokenizer,
    policy: MaskPolicy,
    max_length: usize,
) -> Result<TokenizedFile> {
    let records = crate::data::read_records(path)?;
    let source = if path.is_dir() {
        path.join("train.jsonl")
    } else {
        path.to_path_buf()
    };
    let mut examples = Vec::with_capacity(records.len());
    let mut skipped_empty = 0;
    for (i, record) in records.iter().enumerate() {
        let example = tokenize_record(record, template, tokenizer, policy, max_length)
            .map_err(|e| Error::Invalid(format!("{}: record {}: {e}", source.display(), i + 1)))?;
        if example.trained_tokens() > 0 && example.tokens.len() > 1 {
            examples.push(example);
        } else {
            skipped_empty += 1;
        }
    }
    Ok(TokenizedFile {
        examples,
        skipped_empty,
    })
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskPolicy {
    /// Assistant turns / completions only (the default for chat data).
    #[default]
    Completions,
    /// Every token.
    All,
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
            render_chat(template, messages)?
        }
        Record::Completion { prompt, completion } => {
            let text = format!("{prompt}{completion}");
            (text.clone(), vec![(prompt.len(), text.len())])
        }
        Record::Text(text) => (text.clone(), vec![(0, text.len())]),
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
    // Completions end where the model should stop: learn the eos token too.
    if matches!(record, Record::Completion { .. } | Record::Text(_)) {
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
) -> Result<(String, Vec<(usize, usize)>)> {
    let full = template.render(messages, false)?;
    let mut spans = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        if message.role != "assistant" {
            continue;
        }
        let before = template.render(&messages[..i], true)?;
        let through = template.render(&messages[..=i], false)?;
        if !full.starts_with(&before) || !full.starts_with(&through) || through.len() < before.len()
        {
            return Err(Error::Invalid(
                "the chat template does not render conversations incrementally, so assistant turns cannot be located".into(),
            ));
        }
        spans.push((before.len(), through.len()));
    }
    Ok((full, spans))
}
