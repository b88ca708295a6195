//! Rows → training records. The shape of each record is recognised from its
//! fields: OpenAI `messages`, ShareGPT `conversations`, `prompt` +
//! `completion`, Alpaca `instruction` / `input` / `output`, or `text`; a
//! column mapping renames a file's own columns to these. Errors name the
//! file, the line or record, and what was expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::formats::{kind, Digest, Row, Rows, EXTENSIONS};
use super::preference::Pair;
use crate::chat_template::Message;
use crate::error::{Error, Result};

/// One training example as the user wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A conversation (OpenAI `messages`, ShareGPT, Alpaca).
    Chat(Vec<Message>),
    /// A prompt and the completion to learn.
    Completion { prompt: String, completion: String },
    /// Plain text, learned whole.
    Text(String),
    /// A plain-text corpus, cut into examples of the maximum length.
    Corpus(String),
    /// A prompt with a chosen and a rejected answer (preference training).
    Preference(Box<Pair>),
}

/// What to do with a record that cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadRecord {
    /// Stop with an error naming the record (the default).
    #[default]
    Error,
    /// Leave it out, and say so in a summary.
    Skip,
}

impl std::str::FromStr for OnBadRecord {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "error" => Ok(Self::Error),
            "skip" => Ok(Self::Skip),
            _ => Err(format!("`{s}`: expected error or skip")),
        }
    }
}

/// How to read a dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadOptions {
    pub on_bad_record: OnBadRecord,
    /// A field the reader knows (`prompt`, `completion`, `messages`,
    /// `conversations`, `instruction`, `input`, `output`, `text`, `system`)
    /// → the file's column holding it.
    pub columns: BTreeMap<String, String>,
}

/// A record left out, and why (`location` follows the file name, as in
/// [`super::formats::Row`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub location: String,
    pub reason: String,
}

/// The records of one file.
#[derive(Debug, Clone)]
pub struct RecordSet {
    /// The file read (a folder's train file, resolved).
    pub source: PathBuf,
    pub records: Vec<Record>,
    pub skipped: Vec<Skipped>,
}

/// Field names the reader understands, for checking column mappings.
const KNOWN_FIELDS: &[&str] = &[
    "messages",
    "conversations",
    "prompt",
    "completion",
    "instruction",
    "input",
    "output",
    "text",
    "system",
    "chosen",
    "rejected",
    "answer",
];

/// The `train` / `valid` / `test` files of a dataset folder (mlx-lm's
/// convention), in any supported format.
pub fn split_file(dir: &Path, split: &str) -> Option<PathBuf> {
    EXTENSIONS
        .iter()
        .map(|ext| dir.join(format!("{split}.{ext}")))
        .find(|p| p.is_file())
}

/// The validation file that goes with a dataset (mlx-lm's convention): the
/// folder's `valid.*`, or `valid.*` beside a `train.*` file.
pub fn valid_file(data: &Path) -> Option<PathBuf> {
    if data.is_dir() {
        split_file(data, "valid")
    } else if data.file_stem().is_some_and(|stem| stem == "train") {
        split_file(data.parent()?, "valid")
    } else {
        None
    }
}

/// The file a dataset path means: itself, or a folder's train file.
pub fn train_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    split_file(path, "train").ok_or_else(|| {
        Error::Invalid(format!(
            "{}: a dataset folder needs a train file (train.{})",
            path.display(),
            EXTENSIONS.join(", train.")
        ))
    })
}

/// Reads every record of a file (or a folder's train file).
pub fn read_records(path: &Path, options: &ReadOptions) -> Result<RecordSet> {
    let mut stream = RecordStream::open(path, options)?;
    let records = stream.by_ref().collect::<Result<Vec<_>>>()?;
    let source = stream.file.clone();
    let skipped = stream.finish()?;
    Ok(RecordSet {
        source,
        records,
        skipped,
    })
}

impl RecordStream {
    /// Refuses a column mapping to a field the reader does not know.
    pub fn check_options(options: &ReadOptions) -> Result<()> {
        check_columns(options)
    }
}

pub(super) fn check_columns(options: &ReadOptions) -> Result<()> {
    if let Some(bad) = options
        .columns
        .keys()
        .find(|k| !KNOWN_FIELDS.contains(&k.as_str()))
    {
        return Err(Error::Invalid(format!(
            "column mapping: `{bad}` is not a field the reader knows ({})",
            KNOWN_FIELDS.join(", ")
        )));
    }
    Ok(())
}

/// The records of a file, parsed as they are read (see [`Rows`]); the
/// records left out are kept for [`RecordStream::finish`].
pub struct RecordStream {
    /// The file read (a folder's train file, resolved).
    pub file: PathBuf,
    rows: Rows,
    options: ReadOptions,
    skipped: Vec<Skipped>,
    records: usize,
}

impl RecordStream {
    /// Checks the options and the whole file, and opens it.
    pub fn open(path: &Path, options: &ReadOptions) -> Result<Self> {
        check_columns(options)?;
        let file = train_file(path)?;
        let rows = Rows::open(&file)?;
        Self::start(file, rows, options)
    }

    /// Opens `file` (not a folder), which [`super::formats::scan`] has
    /// passed.
    pub fn open_scanned(file: &Path, options: &ReadOptions) -> Result<Self> {
        check_columns(options)?;
        let rows = Rows::open_scanned(file)?;
        Self::start(file.into(), rows, options)
    }

    fn start(file: PathBuf, rows: Rows, options: &ReadOptions) -> Result<Self> {
        // A file cut off at its end is the first thing to say, before any
        // problem with a single record.
        if options.on_bad_record == OnBadRecord::Error {
            if let Some(Row {
                location,
                value: Err(reason),
            }) = &rows.cut_off
            {
                return Err(Error::Invalid(format!(
                    "{}{location}: {reason} (pass --on-bad-record skip to use the complete records)",
                    file.display(),
                )));
            }
        }
        Ok(Self {
            file,
            rows,
            options: options.clone(),
            skipped: Vec::new(),
            records: 0,
        })
    }

    /// The SHA-256 of the bytes read, once every record has been (None
    /// where the format is read by seeking).
    pub fn digest(&self) -> Option<Digest> {
        self.rows.digest()
    }

    /// The records left out, or the error when none was usable.
    pub fn finish(self) -> Result<Vec<Skipped>> {
        if self.records == 0 {
            let file = &self.file;
            return Err(Error::Invalid(format!(
                "{}: no usable records ({} skipped{})",
                file.display(),
                self.skipped.len(),
                self.skipped
                    .first()
                    .map(|s| format!(
                        "; the first, at {}{}: {}",
                        file.display(),
                        s.location,
                        s.reason
                    ))
                    .unwrap_or_default()
            )));
        }
        Ok(self.skipped)
    }
}

impl Iterator for RecordStream {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Result<Record>> {
        loop {
            let row = match self.rows.next()? {
                Ok(row) => row,
                Err(e) => return Some(Err(e)),
            };
            let parsed = row
                .value
                .and_then(|v| parse_record(rename_columns(v, &self.options.columns)));
            match parsed {
                Ok(record) => {
                    self.records += 1;
                    return Some(Ok(record));
                }
                Err(reason) if self.options.on_bad_record == OnBadRecord::Skip => {
                    self.skipped.push(Skipped {
                        location: row.location,
                        reason,
                    })
                }
                Err(reason) => {
                    let hint = if reason.contains("cut off") {
                        " (pass --on-bad-record skip to use the complete records)"
                    } else {
                        ""
                    };
                    return Some(Err(Error::Invalid(format!(
                        "{}{}: {reason}{hint}",
                        self.file.display(),
                        row.location
                    ))));
                }
            }
        }
    }
}

pub(super) fn rename_columns(value: Value, columns: &BTreeMap<String, String>) -> Value {
    let Value::Object(mut map) = value else {
        return value;
    };
    for (field, column) in columns {
        if let Some(v) = map.remove(column) {
            map.insert(field.clone(), v);
        }
    }
    Value::Object(map)
}

pub(super) fn string_field(
    object: &Map<String, Value>,
    name: &str,
) -> std::result::Result<Option<String>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // CSV / Parquet numbers and booleans are text too.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(format!("`{name}` must be a string, found {}", kind(other))),
    }
}

pub(crate) fn parse_record(value: Value) -> std::result::Result<Record, String> {
    let object = match value {
        Value::Object(o) => o,
        other => return Err(format!("expected a JSON object, found {}", kind(&other))),
    };
    if object.get("corpus") == Some(&Value::Bool(true)) {
        return Ok(Record::Corpus(
            string_field(&object, "text")?.unwrap_or_default(),
        ));
    }
    if super::preference::is_pair(&object) {
        return super::preference::parse(&object);
    }
    if let Some(messages) = object.get("messages") {
        return chat(openai_messages(messages)?);
    }
    if let Some(turns) = object.get("conversations") {
        let mut messages = sharegpt(turns)?;
        if let Some(system) = string_field(&object, "system")? {
            if !system.is_empty() && messages.first().is_none_or(|m| m.role != "system") {
                messages.insert(0, Message::new("system", &system));
            }
        }
        return chat(messages);
    }
    if object.contains_key("prompt") || object.contains_key("completion") {
        return match (
            string_field(&object, "prompt")?,
            string_field(&object, "completion")?,
        ) {
            (Some(prompt), Some(completion)) => Ok(Record::Completion { prompt, completion }),
            _ => Err("a prompt/completion record needs both `prompt` and `completion`".into()),
        };
    }
    if object.contains_key("instruction") || object.contains_key("output") {
        let (Some(instruction), Some(output)) = (
            string_field(&object, "instruction")?,
            string_field(&object, "output")?,
        ) else {
            return Err(
                "an Alpaca record needs `instruction` and `output` (`input` is optional)".into(),
            );
        };
        let input = string_field(&object, "input")?.unwrap_or_default();
        let user = if input.trim().is_empty() {
            instruction
        } else {
            format!("{instruction}\n\n{input}")
        };
        let mut messages = Vec::new();
        if let Some(system) = string_field(&object, "system")?.filter(|s| !s.is_empty()) {
            messages.push(Message::new("system", &system));
        }
        messages.push(Message::new("user", &user));
        messages.push(Message::new("assistant", &output));
        return Ok(Record::Chat(messages));
    }
    if object.contains_key("text") {
        return string_field(&object, "text")?
            .map(Record::Text)
            .ok_or_else(|| "`text` must be a string".into());
    }
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    Err(format!(
        "unrecognised record with keys [{}]: expected `messages`, `conversations`, `prompt` + `completion`, `instruction` + `output`, `text`, or `chosen` + `rejected` (map other column names with --columns)",
        keys.join(", ")
    ))
}

fn chat(messages: Vec<Message>) -> std::result::Result<Record, String> {
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err("the conversation has no assistant message to learn".into());
    }
    Ok(Record::Chat(messages))
}

/// A message's text: a string, OpenAI's list of parts, and any tool calls
/// kept as JSON text.
fn content_text(m: &Map<String, Value>, i: usize) -> std::result::Result<String, String> {
    let mut text = match m.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        Some(other) => {
            return Err(format!(
                "messages[{i}].content must be text, found {}",
                kind(other)
            ))
        }
    };
    if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&calls.to_string());
    }
    Ok(text)
}

pub(super) fn openai_messages(messages: &Value) -> std::result::Result<Vec<Message>, String> {
    let list = messages
        .as_array()
        .ok_or("`messages` must be a list of {role, content}")?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let m = m.as_object().ok_or_else(|| {
                format!("messages[{i}] must be an object with `role` and `content`")
            })?;
            let role = m
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("messages[{i}] needs a string `role`"))?;
            let role = match role {
                "system" | "developer" | "user" | "assistant" | "tool" | "function" | "ipython" => {
                    role
                }
                // Gemma's name for the assistant.
                "model" => "assistant",
                other => {
                    return Err(format!(
                        "messages[{i}]: unknown role `{other}` (expected system, user, assistant or tool)"
                    ))
                }
            };
            if !m.contains_key("content") && !m.contains_key("tool_calls") {
                return Err(format!("messages[{i}] needs `content`"));
            }
            let no_calls = m.get("tool_calls").is_none_or(Value::is_null);
            if role == "assistant" && m.get("content").is_some_and(Value::is_null) && no_calls {
                return Err(format!(
                    "messages[{i}]: the assistant's `content` is null and it makes no `tool_calls`: there is no reply to learn"
                ));
            }
            Ok(Message::new(role, &content_text(m, i)?))
        })
        .collect()
}

/// ShareGPT: `conversations` of `{from, value}`.
fn sharegpt(turns: &Value) -> std::result::Result<Vec<Message>, String> {
    let list = turns
        .as_array()
        .ok_or("`conversations` must be a list of {from, value}")?;
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            let from = t
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("conversations[{i}] needs a string `from`"))?;
            let value = t
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("conversations[{i}] needs a string `value`"))?;
            let role = match from.to_ascii_lowercase().as_str() {
                "human" | "user" => "user",
                "gpt" | "assistant" | "chatgpt" | "bard" | "bing" | "model" => "assistant",
                "system" => "system",
                "tool" | "function" | "function_response" | "observation" => "tool",
                other => {
                    return Err(format!(
                        "conversations[{i}]: unknown speaker `{other}` (expected human, gpt, system or tool)"
                    ))
                }
            };
            Ok(Message::new(role, value))
        })
        .collect()
}
