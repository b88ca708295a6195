//! A `.json` dataset read one record at a time: the elements of a top-level
//! list (or the values of an object of records) are cut out of the byte
//! stream by their brackets and parsed one by one, so memory holds one
//! record, never the file.

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

use super::formats::Row;

/// What a document's first byte and a quick pass over its structure say it
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `[ record, … ]`
    List,
    /// `{ "name": { … }, … }`: every value an object, none named `messages`.
    Records,
    /// One object that is itself a record (read whole).
    Single,
    /// Not a list or an object: the kind of value found, as an error.
    Scalar(&'static str),
}

/// A reader of bytes that knows the line and column (1-based, in bytes) of
/// the next byte, after a leading byte-order mark.
pub struct Scanner<R> {
    reader: R,
    line: usize,
    column: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

impl<R: BufRead> Scanner<R> {
    pub fn new(mut reader: R) -> io::Result<Self> {
        if reader.fill_buf()?.starts_with(b"\xef\xbb\xbf") {
            reader.consume(3);
        }
        Ok(Self {
            reader,
            line: 1,
            column: 1,
        })
    }

    pub fn position(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    fn advance(line: &mut usize, column: &mut usize, b: u8) {
        if b == b'\n' {
            *line += 1;
            *column = 1;
        } else {
            *column += 1;
        }
    }

    /// The next byte that is not whitespace, left unread; None at the end.
    pub fn peek(&mut self) -> io::Result<Option<u8>> {
        loop {
            let Self {
                reader,
                line,
                column,
            } = self;
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            let spaces = buf.iter().take_while(|&&b| is_space(b)).count();
            let next = buf.get(spaces).copied();
            for &b in &buf[..spaces] {
                Self::advance(line, column, b);
            }
            reader.consume(spaces);
            if next.is_some() {
                return Ok(next);
            }
        }
    }

    /// Up to `n` bytes from the next one on, left unread (for a message).
    pub fn preview(&mut self, n: usize) -> io::Result<String> {
        let buf = self.reader.fill_buf()?;
        let end = buf.len().min(n);
        Ok(String::from_utf8_lossy(&buf[..end])
            .lines()
            .next()
            .unwrap_or("")
            .to_string())
    }

    /// Consumes the byte [`Self::peek`] returned.
    pub fn bump(&mut self) {
        if let Ok(&[b, ..]) = self.reader.fill_buf().as_deref() {
            Self::advance(&mut self.line, &mut self.column, b);
            self.reader.consume(1);
        }
    }

    /// Reads one JSON value's text, from the next (non-space) byte: a
    /// bracketed or quoted value up to its matching end, anything else up
    /// to the next delimiter. Its bytes go to `out` when given. False when
    /// the file ends inside the value.
    pub fn value(&mut self, mut out: Option<&mut Vec<u8>>) -> io::Result<bool> {
        if self.peek()?.is_none() {
            return Ok(false);
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut first = true;
        let mut scalar = false;
        loop {
            let Self {
                reader,
                line,
                column,
            } = self;
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(scalar);
            }
            let mut used = 0;
            let mut done = false;
            for &b in buf {
                if first {
                    first = false;
                    match b {
                        b'{' | b'[' => depth = 1,
                        b'"' => in_string = true,
                        _ => scalar = true,
                    }
                } else if scalar {
                    if is_space(b) || matches!(b, b',' | b']' | b'}' | b':') {
                        done = true;
                        break;
                    }
                } else if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                } else {
                    match b {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        _ => {}
                    }
                }
                Self::advance(line, column, b);
                used += 1;
                if !scalar && !in_string && depth == 0 {
                    done = true;
                    break;
                }
            }
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&buf[..used]);
            }
            reader.consume(used);
            if done {
                return Ok(true);
            }
        }
    }
}

fn kind_of_first(b: u8) -> Option<&'static str> {
    Some(match b {
        b'"' => "a string",
        b'-' | b'0'..=b'9' => "a number",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => return None,
    })
}

/// A quick pass over the document's structure (brackets and top-level
/// names, nothing parsed): its shape, and for a list or an object of
/// records, the row that says the file is cut off, if it is.
pub fn survey<R: BufRead>(reader: R) -> io::Result<(Shape, Option<Row>)> {
    let mut s = Scanner::new(reader)?;
    let shape = match s.peek()? {
        Some(b'[') => Shape::List,
        Some(b'{') => Shape::Records,
        Some(b) => return Ok((kind_of_first(b).map_or(Shape::Single, Shape::Scalar), None)),
        None => return Ok((Shape::Single, None)),
    };
    s.bump();
    let mut key = Vec::new();
    let mut number = 0;
    loop {
        // Before a record: `]` / `}`, a (separating) comma, or the record.
        let mut next = s.peek()?;
        if number > 0 && next == Some(b',') {
            s.bump();
            next = s.peek()?;
        }
        let (line, column) = s.position();
        match next {
            None => return Ok((shape, Some(not_closed(number + 1)))),
            Some(b']' | b'}') => return Ok((shape, None)),
            Some(_) => {}
        }
        number += 1;
        if shape == Shape::Records {
            key.clear();
            if !s.value(Some(&mut key))? {
                return Ok((shape, Some(cut_off(line, column, number))));
            }
            if key == b"\"messages\"" {
                return Ok((Shape::Single, None));
            }
            if s.peek()? == Some(b':') {
                s.bump();
            }
            match s.peek()? {
                Some(b'{') => {}
                Some(_) => return Ok((Shape::Single, None)),
                None => return Ok((shape, Some(cut_off(line, column, number)))),
            }
        }
        if !s.value(None)? {
            return Ok((shape, Some(cut_off(line, column, number))));
        }
        // A malformed separator is left for the reading pass to report.
        if !matches!(s.peek()?, Some(b',' | b']' | b'}') | None) {
            return Ok((shape, None));
        }
    }
}

fn cut_off(line: usize, column: usize, number: usize) -> Row {
    Row {
        location: format!(":{line}:{column}"),
        value: Err(format!(
            "the file ends in the middle of record {number}, which starts here (cut off?); the {} records before it are complete",
            number - 1
        )),
    }
}

fn not_closed(number: usize) -> Row {
    Row {
        location: format!(": record {number}"),
        value: Err(format!(
            "the file ends before the list is closed (cut off?); the {} records before it are complete",
            number - 1
        )),
    }
}

/// The records of a list or an object of records, parsed as they are read.
pub struct JsonRecords<R> {
    path: PathBuf,
    scanner: Option<Scanner<R>>,
    records: bool,
    number: usize,
    /// Read to the end, cleanly (the scanner is kept for its reader).
    ended: bool,
    text: Vec<u8>,
}

impl<R: BufRead> JsonRecords<R> {
    /// `shape` is [`Shape::List`] or [`Shape::Records`], from [`survey`].
    pub fn new(path: &Path, reader: R, shape: &Shape) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.into(),
            source,
        };
        let mut scanner = Scanner::new(reader).map_err(io)?;
        scanner.peek().map_err(io)?;
        scanner.bump();
        Ok(Self {
            path: path.into(),
            scanner: Some(scanner),
            records: *shape == Shape::Records,
            number: 0,
            ended: false,
            text: Vec::new(),
        })
    }

    /// The reader, once every record has been read and the document ended
    /// as it should (to finish a hash).
    pub fn finished(&self) -> Option<&R> {
        self.scanner
            .as_ref()
            .filter(|_| self.ended)
            .map(Scanner::get_ref)
    }

    fn invalid(&self, line: usize, column: usize, what: String) -> Error {
        Error::Invalid(format!("{}:{line}:{column}: {what}", self.path.display()))
    }

    fn next_row(&mut self) -> Result<Option<Row>> {
        let path = self.path.clone();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        if self.ended {
            return Ok(None);
        }
        let Some(s) = self.scanner.as_mut() else {
            return Ok(None);
        };
        let close = if self.records { b'}' } else { b']' };
        let mut next = s.peek().map_err(io)?;
        if self.number > 0 {
            match next {
                Some(b',') => {
                    s.bump();
                    next = s.peek().map_err(io)?;
                }
                Some(b) if b == close => {}
                None => {}
                Some(_) => {
                    let (line, column) = s.position();
                    let (a, b) = if self.records {
                        ("`,`", "`}`")
                    } else {
                        ("`,`", "`]`")
                    };
                    return Err(self.invalid(
                        line,
                        column,
                        format!("expected {a} or {b} after record {}", self.number),
                    ));
                }
            }
        }
        let s = self.scanner.as_mut().expect("open");
        let (line, column) = s.position();
        match next {
            None => {
                self.scanner = None;
                return Ok(Some(not_closed(self.number + 1)));
            }
            Some(b) if b == close => {
                s.bump();
                // Nothing but whitespace may follow; the rest is read for
                // the file's hash.
                let after = s.peek().map_err(io)?;
                if after.is_some() {
                    let (line, column) = s.position();
                    let text = s.preview(40).map_err(io)?;
                    return Err(self.invalid(
                        line,
                        column,
                        format!("unexpected text after the end of the records: `{text}`"),
                    ));
                }
                self.ended = true;
                return Ok(None);
            }
            Some(_) => {}
        }
        self.number += 1;
        let number = self.number;
        let mut name = None;
        if self.records {
            self.text.clear();
            if !s.value(Some(&mut self.text)).map_err(io)? {
                self.scanner = None;
                return Ok(Some(cut_off(line, column, number)));
            }
            let key: String = serde_json::from_slice(&self.text).map_err(|_| {
                self.invalid(
                    line,
                    column,
                    format!(
                        "expected the name of record {number} in double quotes, found `{}`",
                        String::from_utf8_lossy(&self.text)
                    ),
                )
            })?;
            let s = self.scanner.as_mut().expect("open");
            if s.peek().map_err(io)? != Some(b':') {
                let (line, column) = s.position();
                return Err(self.invalid(
                    line,
                    column,
                    format!("expected `:` after the name `{key}`"),
                ));
            }
            s.bump();
            name = Some(key);
        }
        let s = self.scanner.as_mut().expect("open");
        let (line, column) = if self.records {
            s.peek().map_err(io)?;
            s.position()
        } else {
            (line, column)
        };
        self.text.clear();
        if !s.value(Some(&mut self.text)).map_err(io)? {
            self.scanner = None;
            return Ok(Some(cut_off(line, column, number)));
        }
        let location = match &name {
            Some(k) => format!(": record `{k}`"),
            None => format!(": record {number}"),
        };
        match serde_json::from_slice::<Value>(&self.text) {
            Ok(value) => Ok(Some(Row {
                location,
                value: Ok(value),
            })),
            Err(e) => {
                let text = String::from_utf8_lossy(&self.text);
                let source = text.lines().nth(e.line().saturating_sub(1)).unwrap_or("");
                let (at_line, at_column) = if e.line() <= 1 {
                    (line, column + e.column().saturating_sub(1))
                } else {
                    (line + e.line() - 1, e.column())
                };
                Err(self.invalid(
                    at_line,
                    at_column,
                    format!(
                        "malformed JSON in record {number} ({}) near `{}`",
                        strip_position(&e.to_string()),
                        snippet(source, e.column())
                    ),
                ))
            }
        }
    }
}

impl<R: BufRead> Iterator for JsonRecords<R> {
    type Item = Result<Row>;
    fn next(&mut self) -> Option<Result<Row>> {
        match self.next_row() {
            Ok(Some(row)) => Some(Ok(row)),
            Ok(None) => None,
            Err(e) => {
                self.scanner = None;
                Some(Err(e))
            }
        }
    }
}

/// A document that is one record (or not a record at all), read whole; at
/// most `limit` bytes.
pub fn single<R: Read>(path: &Path, mut reader: R, shape: &Shape, limit: u64) -> Result<Vec<Row>> {
    if let Shape::Scalar(kind) = shape {
        return Err(Error::Invalid(format!(
            "{}: expected a list of records (or an object of records), found {kind}",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    (&mut reader)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(Error::Invalid(format!(
            "{}: a single record of more than {} MiB; a large .json dataset must be a list of records",
            path.display(),
            limit >> 20
        )));
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let line = text.lines().nth(e.line().saturating_sub(1)).unwrap_or("");
        Error::Invalid(format!(
            "{}:{}:{}: malformed JSON ({}) near `{}`",
            path.display(),
            e.line(),
            e.column(),
            strip_position(&e.to_string()),
            snippet(line, e.column())
        ))
    })?;
    match value {
        Value::Object(_) => Ok(vec![Row {
            location: ": record 1".into(),
            value: Ok(value),
        }]),
        other => Err(Error::Invalid(format!(
            "{}: expected a list of records (or an object of records), found {}",
            path.display(),
            super::formats::kind(&other)
        ))),
    }
}

pub(super) fn snippet(line: &str, column: usize) -> String {
    let mut start = column.saturating_sub(20).min(line.len());
    while !line.is_char_boundary(start) {
        start -= 1;
    }
    line[start..].chars().take(40).collect()
}

/// serde_json's message without its own " at line L column C" (the
/// location is given in front, relative to the file).
pub(super) fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> (Shape, Option<Row>, Vec<std::result::Result<Row, String>>) {
        let (shape, cut) = survey(text.as_bytes()).unwrap();
        let rows = match shape {
            Shape::List | Shape::Records => {
                JsonRecords::new(Path::new("d.json"), text.as_bytes(), &shape)
                    .unwrap()
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect()
            }
            _ => single(Path::new("d.json"), text.as_bytes(), &shape, 1 << 20)
                .map_err(|e| e.to_string())
                .map_or_else(|e| vec![Err(e)], |v| v.into_iter().map(Ok).collect()),
        };
        (shape, cut, rows)
    }

    fn values(rows: &[std::result::Result<Row, String>]) -> Vec<String> {
        rows.iter()
            .map(|r| match r {
                Ok(Row {
                    location,
                    value: Ok(v),
                }) => format!("{location}={v}"),
                Ok(Row {
                    location,
                    value: Err(e),
                }) => format!("{location}!{e}"),
                Err(e) => format!("ERR {e}"),
            })
            .collect()
    }

    #[test]
    fn a_list_is_read_record_by_record_with_brackets_inside_strings() {
        let (shape, cut, rows) = rows(
            "\u{feff} [ {\"t\": \"a ] } \\\" [\"},\n[1, {\"x\": []}] ,\"s\", 12 , null, ]  \n",
        );
        assert_eq!(shape, Shape::List);
        assert!(cut.is_none());
        assert_eq!(
            values(&rows),
            [
                ": record 1={\"t\":\"a ] } \\\" [\"}",
                ": record 2=[1,{\"x\":[]}]",
                ": record 3=\"s\"",
                ": record 4=12",
                ": record 5=null",
            ]
        );
    }

    #[test]
    fn a_cut_off_list_is_found_by_the_survey_and_by_the_reader() {
        let text = "[{\"text\": \"a\"},\n {\"text\": \"b";
        let (_, cut, rows) = rows(text);
        let cut = cut.unwrap();
        assert_eq!(cut.location, ":2:2");
        assert_eq!(values(&rows)[1], format!(":2:2!{}", cut.value.unwrap_err()));
        let (_, cut, rows) = self::rows("[{\"a\": 1}, 2");
        assert_eq!(cut.unwrap().location, ": record 3");
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn malformed_records_and_separators_name_line_and_column() {
        let (_, _, rows) = rows("[{\"a\": 1},\n  {\"b\" 2}]");
        assert!(
            values(&rows)[1]
                .starts_with("ERR d.json:2:8: malformed JSON in record 2 (expected `:`)"),
            "{:?}",
            values(&rows)
        );
        let (_, _, rows) = self::rows("[{\"a\": 1} {\"b\": 2}]");
        assert_eq!(
            values(&rows)[1],
            "ERR d.json:1:11: expected `,` or `]` after record 1"
        );
        let (_, _, rows) = self::rows("[1] x");
        assert_eq!(
            values(&rows)[1],
            "ERR d.json:1:5: unexpected text after the end of the records: `x`"
        );
        let (_, _, rows) = self::rows("[,]");
        assert!(values(&rows)[0].starts_with("ERR d.json:1:2: malformed JSON in record 1"));
    }

    #[test]
    fn an_object_of_records_is_streamed_and_a_single_record_is_one_row() {
        let (shape, _, rows) = rows("{\"one\": {\"text\": \"a\"}, \"two\": {\"text\": \"b\"}}");
        assert_eq!(shape, Shape::Records);
        assert_eq!(
            values(&rows),
            [
                ": record `one`={\"text\":\"a\"}",
                ": record `two`={\"text\":\"b\"}"
            ]
        );
        let (shape, _, rows) = self::rows("{\"meta\": {}, \"messages\": []}");
        assert_eq!(shape, Shape::Single);
        assert_eq!(values(&rows), [": record 1={\"messages\":[],\"meta\":{}}"]);
        let (shape, _, rows) = self::rows("{\"text\": \"just one\"}");
        assert_eq!(shape, Shape::Single);
        assert_eq!(rows.len(), 1);
        let (shape, _, rows) = self::rows("42");
        assert_eq!(shape, Shape::Scalar("a number"));
        assert_eq!(
            values(&rows),
            ["ERR d.json: expected a list of records (or an object of records), found a number"]
        );
    }

    #[test]
    fn a_huge_single_record_is_refused_before_it_is_read() {
        let text = format!("{{\"text\": \"{}\"}}", "x".repeat(2 << 20));
        let (shape, _) = survey(text.as_bytes()).unwrap();
        let err = single(Path::new("d.json"), text.as_bytes(), &shape, 1 << 20).unwrap_err();
        assert!(err
            .to_string()
            .contains("a single record of more than 1 MiB"));
    }
}
