//! Dataset files → rows: JSON objects, each with where it came from, or the
//! reason it could not be read. What the rows mean is `records`' business.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

use super::json_stream::{self, snippet, strip_position, JsonRecords, Shape};

/// A `.json` document that is one record is read whole: at most this much.
const SINGLE_RECORD_LIMIT: u64 = 1 << 30;

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

/// Reads `path` into rows (all of them in memory: see [`Rows`] for a
/// stream). Whole-file problems (unreadable, not UTF-8, empty) are errors;
/// a bad row is a row with an error.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    Rows::open(path)?.collect()
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.into(),
        source,
    }
}

/// The SHA-256 of a file's bytes.
pub type Digest = [u8; 32];

const CHUNK: usize = 1 << 20;

/// One pass over `path` in blocks of a MiB: its SHA-256, and for the text
/// formats the whole-file checks (valid UTF-8, not empty) that come before
/// any record's own problem.
pub fn scan(path: &Path) -> Result<Digest> {
    use sha2::{Digest as _, Sha256};
    let format = Format::of(path)?;
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    let text = format != Format::Parquet;
    let mut buf = vec![0u8; CHUNK + 4];
    let (mut carry, mut lines, mut first, mut content) = (0usize, 0usize, true, false);
    loop {
        let n = loop {
            match file.read(&mut buf[carry..carry + CHUNK]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.map_err(io_error(path))?,
            }
        };
        hasher.update(&buf[carry..carry + n]);
        if !text {
            if n == 0 {
                break;
            }
            continue;
        }
        let data = &buf[..carry + n];
        let (valid, rest) = match std::str::from_utf8(data) {
            Ok(s) => (s, 0),
            // A character cut by the block's end is completed by the next.
            Err(e) if e.error_len().is_none() && n > 0 => (
                std::str::from_utf8(&data[..e.valid_up_to()]).expect("valid prefix"),
                data.len() - e.valid_up_to(),
            ),
            Err(e) => {
                let line = lines + newlines(&data[..e.valid_up_to()]) + 1;
                return Err(Error::Invalid(format!(
                    "{}:{line}: not valid UTF-8",
                    path.display()
                )));
            }
        };
        let mut piece = valid;
        if first && !piece.is_empty() {
            piece = piece.strip_prefix('\u{feff}').unwrap_or(piece);
            first = false;
        }
        content |= !piece.trim().is_empty();
        lines += newlines(valid.as_bytes());
        let keep = valid.len();
        buf.copy_within(keep..keep + rest, 0);
        carry = rest;
        if n == 0 {
            break;
        }
    }
    if text && !content {
        return Err(Error::Invalid(format!(
            "{}: no records (the file is empty)",
            path.display()
        )));
    }
    Ok(hasher.finalize().into())
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn hashing(path: &Path) -> Result<Hashing<File>> {
    use sha2::Digest as _;
    Ok(Hashing {
        inner: File::open(path).map_err(io_error(path))?,
        hasher: sha2::Sha256::new(),
    })
}

fn finish_hash<R>(h: &Hashing<R>) -> Digest {
    use sha2::Digest as _;
    h.hasher.clone().finalize().into()
}

/// The rows of a file, read as they are asked for: JSON Lines line by line,
/// CSV / TSV record by record, Parquet row group by row group, a `.json`
/// list (or object of records) record by record; a `.txt` corpus is
/// one row holding the whole text (tokenization streams it instead, see
/// [`TextPieces`]).
pub struct Rows {
    path: PathBuf,
    inner: Inner,
    /// The row that says the file is cut off (a `.json` list), found by a
    /// quick pass before reading: reported before any other record's
    /// problem.
    pub cut_off: Option<Row>,
}

enum Inner {
    Lines {
        reader: BufReader<Hashing<File>>,
        line: usize,
        buf: Vec<u8>,
    },
    Csv {
        reader: csv::Reader<Hashing<File>>,
        headers: Vec<String>,
        any: bool,
    },
    Parquet(parquet::record::reader::RowIter<'static>, usize),
    Json(JsonRecords<BufReader<Hashing<File>>>),
    Whole(std::vec::IntoIter<Row>, Option<Digest>),
    Done(Option<Digest>),
}

impl Rows {
    /// Checks the whole file ([`scan`]) and opens it.
    pub fn open(path: &Path) -> Result<Self> {
        scan(path)?;
        Self::open_scanned(path)
    }

    /// Opens a file [`scan`] has passed.
    pub fn open_scanned(path: &Path) -> Result<Self> {
        let format = Format::of(path)?;
        let inner = match format {
            Format::JsonLines => Inner::Lines {
                reader: BufReader::with_capacity(CHUNK, hashing(path)?),
                line: 0,
                buf: Vec::new(),
            },
            Format::Csv | Format::Tsv => {
                let delimiter = if format == Format::Csv { b',' } else { b'\t' };
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .flexible(false)
                    .from_reader(hashing(path)?);
                let headers: Vec<String> = reader
                    .headers()
                    .map_err(|e| {
                        Error::Invalid(format!("{}:1: unreadable header row: {e}", path.display()))
                    })?
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let h = if i == 0 {
                            h.trim_start_matches('\u{feff}')
                        } else {
                            h
                        };
                        h.trim().to_string()
                    })
                    .collect();
                if headers.iter().all(String::is_empty) {
                    return Err(Error::Invalid(format!(
                        "{}:1: the header row is empty; the first row must name the columns",
                        path.display()
                    )));
                }
                Inner::Csv {
                    reader,
                    headers,
                    any: false,
                }
            }
            Format::Parquet => Inner::Parquet(parquet_rows(path)?, 0),
            Format::Json => {
                let file = File::open(path).map_err(io_error(path))?;
                let (shape, cut_off) = json_stream::survey(BufReader::with_capacity(CHUNK, file))
                    .map_err(io_error(path))?;
                if matches!(shape, Shape::List | Shape::Records) {
                    let reader = BufReader::with_capacity(CHUNK, hashing(path)?);
                    return Ok(Self {
                        path: path.into(),
                        inner: Inner::Json(JsonRecords::new(path, reader, &shape)?),
                        cut_off,
                    });
                }
                let mut reader = hashing(path)?;
                let rows = json_stream::single(path, &mut reader, &shape, SINGLE_RECORD_LIMIT)?;
                Inner::Whole(rows.into_iter(), Some(finish_hash(&reader)))
            }
            Format::Text => {
                use sha2::{Digest as _, Sha256};
                let bytes = std::fs::read(path).map_err(io_error(path))?;
                let digest: Digest = Sha256::digest(&bytes).into();
                let text = std::str::from_utf8(&bytes).map_err(|e| {
                    let line = newlines(&bytes[..e.valid_up_to()]) + 1;
                    Error::Invalid(format!("{}:{line}: not valid UTF-8", path.display()))
                })?;
                let text = text.strip_prefix('\u{feff}').unwrap_or(text);
                let rows = vec![Row {
                    location: String::new(),
                    value: Ok(serde_json::json!({ "text": text, "corpus": true })),
                }];
                Inner::Whole(rows.into_iter(), Some(digest))
            }
        };
        Ok(Self {
            path: path.into(),
            inner,
            cut_off: None,
        })
    }

    /// The SHA-256 of the bytes the rows were read from, once every row has
    /// been read (None for Parquet, read by seeking, or before the end).
    pub fn digest(&self) -> Option<Digest> {
        match &self.inner {
            Inner::Done(d) => *d,
            _ => None,
        }
    }

    fn next_row(&mut self) -> Option<Result<Row>> {
        let path = &self.path;
        match &mut self.inner {
            Inner::Lines { reader, line, buf } => loop {
                buf.clear();
                match reader.read_until(b'\n', buf) {
                    Err(e) => return Some(Err(io_error(path)(e))),
                    Ok(0) => {
                        let digest = finish_hash(reader.get_ref());
                        self.inner = Inner::Done(Some(digest));
                        return None;
                    }
                    Ok(_) => {}
                }
                *line += 1;
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                let Ok(mut text) = std::str::from_utf8(buf) else {
                    return Some(Err(Error::Invalid(format!(
                        "{}:{line}: not valid UTF-8",
                        path.display()
                    ))));
                };
                if *line == 1 {
                    text = text.strip_prefix('\u{feff}').unwrap_or(text);
                }
                if !text.trim().is_empty() {
                    return Some(Ok(json_line(*line, text)));
                }
            },
            Inner::Csv {
                reader,
                headers,
                any,
            } => {
                let mut record = csv::StringRecord::new();
                let row = match reader.read_record(&mut record) {
                    Ok(false) => {
                        if !*any {
                            return Some(Err(Error::Invalid(format!(
                                "{}: no records (only a header row)",
                                path.display()
                            ))));
                        }
                        let digest = finish_hash(reader.get_ref());
                        self.inner = Inner::Done(Some(digest));
                        return None;
                    }
                    Ok(true) => {
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
                        if let csv::ErrorKind::Io(_) = e.kind() {
                            return Some(Err(Error::Invalid(format!("{}: {e}", path.display()))));
                        }
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
                *any = true;
                Some(Ok(row))
            }
            // The parquet crate panics on some damaged files.
            Inner::Parquet(iter, count) => match crate::error::catch_panic(|| iter.next())
                .unwrap_or_else(|panic| {
                    Some(Err(parquet::errors::ParquetError::General(
                        crate::error::without_source_locations(&panic),
                    )))
                }) {
                None if *count == 0 => Some(Err(Error::Invalid(format!(
                    "{}: no records (the file has no rows)",
                    path.display()
                )))),
                None => {
                    self.inner = Inner::Done(None);
                    None
                }
                Some(Err(e)) => Some(Err(Error::Invalid(format!(
                    "{}: not a readable Parquet file: {e}",
                    path.display()
                )))),
                Some(Ok(row)) => {
                    *count += 1;
                    Some(Ok(Row {
                        location: format!(": row {count}"),
                        value: Ok(row.to_json_value()),
                    }))
                }
            },
            Inner::Json(records) => match records.next() {
                Some(row) => Some(row),
                None => {
                    let digest = records.finished().map(|r| finish_hash(r.get_ref()));
                    self.inner = Inner::Done(digest);
                    None
                }
            },
            Inner::Whole(list, digest) => match list.next() {
                Some(row) => Some(Ok(row)),
                None => {
                    self.inner = Inner::Done(*digest);
                    None
                }
            },
            Inner::Done(_) => None,
        }
    }
}

impl Iterator for Rows {
    type Item = Result<Row>;
    fn next(&mut self) -> Option<Result<Row>> {
        let next = self.next_row();
        if matches!(next, Some(Err(_))) {
            self.inner = Inner::Done(None);
        }
        next
    }
}

/// A `.txt` corpus in pieces of about `size` bytes, each ending at a line
/// end (or the file's end), read as they are asked for; the pieces joined
/// are the file's text (without a BOM).
pub struct TextPieces {
    path: PathBuf,
    reader: BufReader<Hashing<File>>,
    size: usize,
    line: usize,
    done: Option<Option<Digest>>,
}

impl TextPieces {
    /// Opens a `.txt` file [`scan`] has passed.
    pub fn open_scanned(path: &Path, size: usize) -> Result<Self> {
        Ok(Self {
            path: path.into(),
            reader: BufReader::with_capacity(CHUNK, hashing(path)?),
            size: size.max(1),
            line: 0,
            done: None,
        })
    }

    /// The SHA-256 of the bytes read, after the last piece.
    pub fn digest(&self) -> Option<Digest> {
        self.done.flatten()
    }
}

impl Iterator for TextPieces {
    type Item = Result<String>;
    fn next(&mut self) -> Option<Result<String>> {
        if self.done.is_some() {
            return None;
        }
        let mut bytes = Vec::with_capacity(self.size + 4096);
        let start_line = self.line;
        while bytes.len() < self.size {
            match self.reader.read_until(b'\n', &mut bytes) {
                Err(e) => {
                    self.done = Some(None);
                    return Some(Err(io_error(&self.path)(e)));
                }
                Ok(0) => {
                    self.done = Some(Some(finish_hash(self.reader.get_ref())));
                    break;
                }
                Ok(_) => self.line += 1,
            }
        }
        let mut text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                self.done = Some(None);
                let bytes = e.as_bytes();
                let valid = e.utf8_error().valid_up_to();
                let line = start_line + newlines(&bytes[..valid]) + 1;
                return Some(Err(Error::Invalid(format!(
                    "{}:{line}: not valid UTF-8",
                    self.path.display()
                ))));
            }
        };
        if start_line == 0 && text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        if text.is_empty() {
            return None;
        }
        Some(Ok(text))
    }
}

fn json_line(number: usize, line: &str) -> Row {
    match serde_json::from_str::<Value>(line) {
        Ok(value) => Row {
            location: format!(":{number}"),
            value: Ok(value),
        },
        Err(e) => Row {
            location: format!(":{number}:{}", e.column()),
            value: Err(format!(
                "malformed JSON ({}) near `{}`",
                strip_position(&e.to_string()),
                snippet(line, e.column())
            )),
        },
    }
}

fn parquet_rows(path: &Path) -> Result<parquet::record::reader::RowIter<'static>> {
    use parquet::file::reader::SerializedFileReader;
    let file = File::open(path).map_err(io_error(path))?;
    let bad = |e: parquet::errors::ParquetError| {
        Error::Invalid(format!(
            "{}: not a readable Parquet file: {e}",
            path.display()
        ))
    };
    let reader = crate::error::catch_panic(|| SerializedFileReader::new(file))
        .unwrap_or_else(|panic| {
            Err(parquet::errors::ParquetError::General(
                crate::error::without_source_locations(&panic),
            ))
        })
        .map_err(bad)?;
    Ok(parquet::record::reader::RowIter::from_file_into(Box::new(
        reader,
    )))
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
