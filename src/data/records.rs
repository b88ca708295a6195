//! Reading training records. JSON Lines with one record per line in one of
//! the common shapes: chat `messages`, `prompt`/`completion`, or `text`.
//! Errors name the file, the line and what is wrong.

use std::path::Path;

use serde_json::Value;

use crate::chat_template::Message;
use crate::error::{Error, Result};

/// One training example as the user wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A conversation (OpenAI `messages`).
    Chat(Vec<Message>),
    /// A prompt and the completion to learn.
    Completion { prompt: String, completion: String },
    /// Plain text, learned whole.
    Text(String),
}

/// Reads a `.jsonl` or `.json` file, or the `train.jsonl` of a dataset folder.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let file = if path.is_dir() {
        path.join("train.jsonl")
    } else {
        path.to_path_buf()
    };
    let bytes = std::fs::read(&file).map_err(|source| Error::Io {
        path: file.clone(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::Invalid(format!("{}:{line}: not valid UTF-8", file.display()))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let is_json = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let records = if is_json {
        read_json_document(&file, text)?
    } else {
        read_json_lines(&file, text)?
    };
    if records.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no records (the file is empty)",
            file.display()
        )));
    }
    Ok(records)
}

/// A `.json` file: a list of records, or an object whose values are records.
fn read_json_document(file: &Path, text: &str) -> Result<Vec<Record>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        if e.is_eof() {
            Error::Invalid(format!(
                "{}:{line}:{column}: the file ends in the middle of a record (cut off?)",
                file.display()
            ))
        } else {
            let source_line = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
            let start = column.saturating_sub(20).min(source_line.len());
            let snippet: String = source_line
                .get(start..)
                .unwrap_or("")
                .chars()
                .take(40)
                .collect();
            Error::Invalid(format!(
                "{}:{line}:{column}: malformed JSON ({e}) near `{snippet}`",
                file.display()
            ))
        }
    })?;
    let items: Vec<(String, &Value)> = match &value {
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("record {}", i + 1), v))
            .collect(),
        Value::Object(map)
            if !map.contains_key("messages") && map.values().all(Value::is_object) =>
        {
            map.iter()
                .map(|(k, v)| (format!("record `{k}`"), v))
                .collect()
        }
        _ => {
            return Err(Error::Invalid(format!(
                "{}: expected a list of records (or an object of records), found {}",
                file.display(),
                kind(&value)
            )))
        }
    };
    items
        .into_iter()
        .map(|(name, v)| {
            parse_record(v)
                .map_err(|what| Error::Invalid(format!("{}: {name}: {what}", file.display())))
        })
        .collect()
}

/// JSON Lines: one record per line; blank lines are skipped.
fn read_json_lines(file: &Path, text: &str) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| {
            let column = e.column();
            let start = column.saturating_sub(20).min(line.len());
            let snippet: String = line.get(start..).unwrap_or("").chars().take(40).collect();
            Error::Invalid(format!(
                "{}:{number}:{column}: malformed JSON ({e}) near `{snippet}`",
                file.display()
            ))
        })?;
        let record = parse_record(&value)
            .map_err(|what| Error::Invalid(format!("{}:{number}: {what}", file.display())))?;
        records.push(record);
    }
    Ok(records)
}

fn parse_record(value: &Value) -> std::result::Result<Record, String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("expected a JSON object, found {}", kind(value)))?;
    if let Some(messages) = object.get("messages") {
        let list = messages
            .as_array()
            .ok_or("`messages` must be a list of {role, content}")?;
        let messages = list
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let role = m.get("role").and_then(Value::as_str);
                let content = m.get("content").and_then(Value::as_str);
                match (role, content) {
                    (Some(role), Some(content)) => Ok(Message::new(role, content)),
                    _ => Err(format!("messages[{i}] needs string `role` and `content`")),
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if !messages.iter().any(|m| m.role == "assistant") {
            return Err("the conversation has no assistant message to learn".into());
        }
        return Ok(Record::Chat(messages));
    }
    if let (Some(p), Some(c)) = (object.get("prompt"), object.get("completion")) {
        return match (p.as_str(), c.as_str()) {
            (Some(prompt), Some(completion)) => Ok(Record::Completion {
                prompt: prompt.into(),
                completion: completion.into(),
            }),
            _ => Err("`prompt` and `completion` must be strings".into()),
        };
    }
    if let Some(text) = object.get("text") {
        return text
            .as_str()
            .map(|t| Record::Text(t.into()))
            .ok_or_else(|| "`text` must be a string".into());
    }
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    Err(format!(
        "unrecognised record with keys [{}]: expected `messages`, `prompt` + `completion`, or `text`",
        keys.join(", ")
    ))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
