//! Dataset files → rows: JSON objects, each with where it came from, or the
//! reason it could not be read. What the rows mean is `records`' business.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// File formats, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Json,
    Csv,
    Tsv,
    Parquet,
    /// A plain-text corpus, cut into chunks of the maximum length.
    Text,
}

pub const EXTENSIONS: &[&str] = &["jsonl", "json", "csv", "tsv", "parquet", "txt"];

impl Format {
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "jsonl" | "ndjson" => Self::JsonLines,
            "json" => Self::Json,
            "csv" => Self::Csv,
            "tsv" => Self::Tsv,
            "parquet" => Self::Parquet,
            "txt" | "text" | "md" => Self::Text,
            _ => {
                return Err(Error::Invalid(format!(
                    "{}: unknown dataset format; use one of .{}",
                    path.display(),
                    EXTENSIONS.join(", .")
                )))
            }
        })
    }
}

/// One row of a file: where it is, written to follow the file's name
/// (`:12` for line 12, `:12:7` with a column, `: record 3`, `: row 7`), and
/// its value or what is wrong with it.
#[derive(Debug, Clone)]
pub struct Row {
    pub location: String,
    pub value: std::result::Result<Value, String>,
}

/// Reads `path` into rows. Whole-file problems (unreadable, not UTF-8,
/// empty) are errors; a bad row is a row with an error.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let format = Format::of(path)?;
    if format == Format::Parquet {
        return read_parquet(path);
    }
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::Invalid(format!("{}:{line}: not valid UTF-8", path.display()))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no records (the file is empty)",
            path.display()
        )));
    }
    match format {
        Format::JsonLines => Ok(json_lines(text)),
        Format::Json => json_document(path, text),
        Format::Csv => delimited(path, text, b','),
        Format::Tsv => delimited(path, text, b'\t'),
        Format::Text => Ok(vec![Row {
            location: String::new(),
            value: Ok(serde_json::json!({ "text": text, "corpus": true })),
        }]),
        Format::Parquet => unreachable!("handled above"),
    }
}

fn snippet(line: &str, column: usize) -> String {
    let mut start = column.saturating_sub(20).min(line.len());
    while !line.is_char_boundary(start) {
        start -= 1;
    }
    line[start..].chars().take(40).collect()
}

/// serde_json's message without its own " at line L column C" (the
/// location is given in front, relative to the file).
fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

fn json_lines(text: &str) -> Vec<Row> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| match serde_json::from_str::<Value>(line) {
            Ok(value) => Row {
                location: format!(":{}", i + 1),
                value: Ok(value),
            },
            Err(e) => Row {
                location: format!(":{}:{}", i + 1, e.column()),
                value: Err(format!(
                    "malformed JSON ({}) near `{}`",
                    strip_position(&e.to_string()),
                    snippet(line, e.column())
                )),
            },
        })
        .collect()
}

/// Line and column (1-based) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// A `.json` document: a list of records, read one element at a time so a
/// file cut off mid-record still yields the complete records before the
/// cut; or an object whose values are records.
fn json_document(path: &Path, text: &str) -> Result<Vec<Row>> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('[') {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            let line = text.lines().nth(e.line().saturating_sub(1)).unwrap_or("");
            Error::Invalid(format!(
                "{}:{}:{}: malformed JSON ({e}) near `{}`",
                path.display(),
                e.line(),
                e.column(),
                snippet(line, e.column())
            ))
        })?;
        return match value {
            Value::Object(map)
                if !map.contains_key("messages") && map.values().all(Value::is_object) =>
            {
                Ok(map
                    .into_iter()
                    .map(|(k, v)| Row {
                        location: format!(": record `{k}`"),
                        value: Ok(v),
                    })
                    .collect())
            }
            Value::Object(_) => Ok(vec![Row {
                location: ": record 1".into(),
                value: Ok(value),
            }]),
            other => Err(Error::Invalid(format!(
                "{}: expected a list of records (or an object of records), found {}",
                path.display(),
                kind(&other)
            ))),
        };
    }
    let mut rows = Vec::new();
    let mut pos = text.len() - trimmed.len() + 1; // after '['
    let skip_ws = |pos: &mut usize| {
        while text[*pos..].starts_with(|c: char| c.is_whitespace()) {
            *pos += text[*pos..].chars().next().map_or(1, char::len_utf8);
        }
    };
    loop {
        skip_ws(&mut pos);
        if text[pos..].starts_with(']') {
            return Ok(rows);
        }
        let number = rows.len() + 1;
        let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                pos += stream.byte_offset();
                rows.push(Row {
                    location: format!(": record {number}"),
                    value: Ok(value),
                });
            }
            Some(Err(e)) if e.is_eof() => {
                let (line, column) = line_column(text, pos);
                rows.push(Row {
                    location: format!(":{line}:{column}"),
                    value: Err(format!(
                        "the file ends in the middle of record {number}, which starts here (cut off?); the {} records before it are complete",
                        number - 1
                    )),
                });
                return Ok(rows);
            }
            Some(Err(e)) => {
                // The element's own text is unknown past the error: stop here.
                let (line, column) = line_column(text, pos);
                let (line, column) = if e.line() == 1 {
                    (line, column + e.column() - 1)
                } else {
                    (line + e.line() - 1, e.column())
                };
                let source = text.lines().nth(line - 1).unwrap_or("");
                return Err(Error::Invalid(format!(
                    "{}:{line}:{column}: malformed JSON in record {number} ({}) near `{}`",
                    path.display(),
                    strip_position(&e.to_string()),
                    snippet(source, column)
                )));
            }
            None => {
                rows.push(Row {
                    location: format!(": record {number}"),
                    value: Err(format!(
                        "the file ends before the list is closed (cut off?); the {} records before it are complete",
                        number - 1
                    )),
                });
                return Ok(rows);
            }
        }
        skip_ws(&mut pos);
        if text[pos..].starts_with(',') {
            pos += 1;
        } else if !text[pos..].starts_with(']') {
            if pos >= text.len() {
                continue; // reported as cut off on the next pass
            }
            let (line, column) = line_column(text, pos);
            return Err(Error::Invalid(format!(
                "{}:{line}:{column}: expected `,` or `]` after record {number}",
                path.display()
            )));
        }
    }
}

/// CSV / TSV with a header row; every cell is a string.
fn delimited(path: &Path, text: &str, delimiter: u8) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| Error::Invalid(format!("{}:1: unreadable header row: {e}", path.display())))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(Error::Invalid(format!(
            "{}:1: the header row is empty; the first row must name the columns",
            path.display()
        )));
    }
    let mut rows = Vec::new();
    for result in reader.records() {
        let row = match result {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                let map: Map<String, Value> = headers
                    .iter()
                    .cloned()
                    .zip(record.iter().map(|c| Value::String(c.to_string())))
                    .collect();
                Row {
                    location: format!(":{line}"),
                    value: Ok(Value::Object(map)),
                }
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let what = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("{len} fields where the header has {expected_len}"),
                    _ => e.to_string(),
                };
                Row {
                    location: format!(":{line}"),
                    value: Err(what),
                }
            }
        };
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no records (only a header row)",
            path.display()
        )));
    }
    Ok(rows)
}

fn read_parquet(path: &Path) -> Result<Vec<Row>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    let bad = |e: parquet::errors::ParquetError| {
        Error::Invalid(format!(
            "{}: not a readable Parquet file: {e}",
            path.display()
        ))
    };
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let mut rows = Vec::new();
    for (i, row) in reader.get_row_iter(None).map_err(bad)?.enumerate() {
        let row = row.map_err(bad)?;
        rows.push(Row {
            location: format!(": row {}", i + 1),
            value: Ok(row.to_json_value()),
        });
    }
    if rows.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no records (the file has no rows)",
            path.display()
        )));
    }
    Ok(rows)
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
