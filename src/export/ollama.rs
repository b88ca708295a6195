//! An Ollama model folder: the GGUF (or base + adapter) and a `Modelfile`
//! for `ollama create NAME -f Modelfile`.
//!
//! Ollama's Modelfile parser has no escapes: a value is bare, in `"…"` or
//! in `"""…"""`, and ends at the first newline where it is complete (for
//! quoted values: where the trimmed text so far ends with the closing
//! quote); characters Go does not count as printable are dropped. So each
//! value is written in the first form that reads back as itself, checked
//! with a parser that follows Ollama's, and a value no form can carry is an
//! error naming it.

use std::path::{Path, PathBuf};

use super::go_template::OllamaTemplate;
use crate::error::{Error, Result};

/// A Modelfile as Ollama reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Modelfile {
    /// `FROM`: a GGUF file (relative to the Modelfile) or a model name.
    pub from: String,
    /// `ADAPTER`: a LoRA GGUF.
    pub adapter: Option<String>,
    /// `TEMPLATE`: the Go chat template.
    pub template: Option<String>,
    /// `SYSTEM`: the default system prompt.
    pub system: Option<String>,
    /// `PARAMETER name value`, in order (`stop` may repeat).
    pub parameters: Vec<(String, String)>,
}

impl Modelfile {
    /// The `PARAMETER stop` values.
    pub fn stops(&self) -> Vec<&str> {
        self.parameters
            .iter()
            .filter(|(name, _)| name == "stop")
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The Modelfile's text: each value in the first form that Ollama
    /// reads back as itself.
    pub fn to_text(&self) -> Result<String> {
        let mut out = String::from(
            "# Written by FineTune. In this folder: ollama create NAME -f Modelfile\n",
        );
        let mut line = |command: &str, value: &str| -> Result<()> {
            out.push_str(command);
            out.push(' ');
            out.push_str(&quote(command, value)?);
            out.push('\n');
            Ok(())
        };
        line("FROM", &self.from)?;
        if let Some(adapter) = &self.adapter {
            line("ADAPTER", adapter)?;
        }
        if let Some(template) = &self.template {
            line("TEMPLATE", template)?;
        }
        if let Some(system) = &self.system {
            line("SYSTEM", system)?;
        }
        for (name, value) in &self.parameters {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Error::Invalid(format!(
                    "Modelfile PARAMETER {name:?}: a name is letters, digits and '_'"
                )));
            }
            line(&format!("PARAMETER {name}"), value)?;
        }
        Ok(out)
    }
}

/// Writes `dir/Modelfile` (never over an existing one): `FROM from`,
/// `ADAPTER adapter`, the template's `TEMPLATE`, `SYSTEM` and a
/// `PARAMETER stop` per stop string, then `extra` as more `PARAMETER`s
/// (e.g. `("num_ctx", "4096")`). Paths are as Ollama reads them: relative
/// to the Modelfile's folder.
pub fn write_modelfile(
    dir: &Path,
    from: &str,
    adapter: Option<&str>,
    template: &OllamaTemplate,
    extra: &[(&str, String)],
) -> Result<PathBuf> {
    let path = dir.join("Modelfile");
    if path.exists() {
        return Err(Error::Invalid(format!(
            "{}: already exists; choose a new folder",
            path.display()
        )));
    }
    let mut parameters: Vec<(String, String)> = template
        .stops
        .iter()
        .map(|stop| ("stop".to_string(), stop.clone()))
        .collect();
    parameters.extend(
        extra
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone())),
    );
    let modelfile = Modelfile {
        from: from.to_string(),
        adapter: adapter.map(str::to_string),
        // A `"""` that would end the value early gets a comment after it.
        template: Some(match quote("TEMPLATE", &template.template) {
            Ok(_) => template.template.clone(),
            Err(_) => guard_triple_quotes(&template.template),
        }),
        system: template.system.clone(),
        parameters,
    };
    let text = modelfile.to_text()?;
    let back = parse_modelfile(&text)?;
    if back != modelfile {
        return Err(Error::Invalid(format!(
            "{}: the Modelfile would not read back as written",
            path.display()
        )));
    }
    crate::files::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

/// Reads a Modelfile as Ollama does (`FROM`, `ADAPTER`, `TEMPLATE`,
/// `SYSTEM`, `PARAMETER`; other commands are skipped).
pub fn read_modelfile(path: &Path) -> Result<Modelfile> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.into(),
        source,
    })?;
    parse_modelfile(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// Parses a Modelfile's text with Ollama's rules.
pub fn parse_modelfile(text: &str) -> Result<Modelfile> {
    let mut modelfile = Modelfile::default();
    let mut from = None;
    for (command, value) in commands(text)? {
        match command.as_str() {
            "model" => from = Some(value),
            "adapter" => modelfile.adapter = Some(value),
            "template" => modelfile.template = Some(value),
            "system" => modelfile.system = Some(value),
            "license" | "message" | "draft" | "renderer" | "parser" | "requires" => {}
            name => modelfile.parameters.push((name.to_string(), value)),
        }
    }
    modelfile.from = from.ok_or_else(|| Error::Invalid("the Modelfile has no FROM".into()))?;
    Ok(modelfile)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Nil,
    Name,
    Value,
    Parameter,
    Message,
    Comment,
}

const COMMANDS: &[&str] = &[
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
];

/// The (command, value) pairs of a Modelfile, the way Ollama's parser
/// reads them: `FROM` is named `model`, a `PARAMETER` by its own name.
fn commands(text: &str) -> Result<Vec<(String, String)>> {
    let bad = |line: usize, what: &str| Error::Invalid(format!("Modelfile line {line}: {what}"));
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let (mut state, mut line) = (State::Nil, 1usize);
    let (mut buffer, mut name, mut role) = (String::new(), String::new(), String::new());
    for c in text.chars() {
        if is_newline(c) {
            line += 1;
        }
        let (mut next, kept) = match state {
            State::Nil if c == '#' => (State::Comment, None),
            State::Nil if is_space(c) || is_newline(c) => (State::Nil, None),
            State::Nil => (State::Name, Some(c)),
            State::Name if c.is_ascii_alphabetic() => (State::Name, Some(c)),
            State::Name if is_space(c) => (State::Value, None),
            State::Name => return Err(bad(line, "not a Modelfile command")),
            State::Value if is_newline(c) || is_space(c) => (State::Nil, Some(c)),
            State::Value => (State::Value, Some(c)),
            State::Parameter if c.is_ascii_alphanumeric() || c == '_' => {
                (State::Parameter, Some(c))
            }
            State::Message if c.is_ascii_alphabetic() => (State::Message, Some(c)),
            State::Parameter | State::Message if is_space(c) => (State::Value, None),
            State::Parameter | State::Message => return Err(bad(line, "unexpected character")),
            State::Comment if is_newline(c) => (State::Nil, None),
            State::Comment => (State::Comment, None),
        };
        if next != state {
            match state {
                State::Name => {
                    let command = buffer.to_ascii_lowercase();
                    if !COMMANDS.contains(&command.as_str()) {
                        return Err(bad(line, &format!("unknown command {buffer:?}")));
                    }
                    name = match command.as_str() {
                        "from" => "model".into(),
                        "parameter" => {
                            next = State::Parameter;
                            String::new()
                        }
                        "message" => {
                            next = State::Message;
                            command
                        }
                        _ => command,
                    };
                }
                State::Parameter => name = buffer.clone(),
                State::Message => role = buffer.clone(),
                State::Value => match unquote(buffer.trim_matches(is_go_space)) {
                    Some(value) if !is_space(c) => {
                        let value = if role.is_empty() {
                            value.to_string()
                        } else {
                            format!("{}: {value}", std::mem::take(&mut role))
                        };
                        out.push((name.clone(), value));
                    }
                    _ => {
                        buffer.push(c);
                        continue;
                    }
                },
                State::Nil | State::Comment => {}
            }
            buffer.clear();
            state = next;
        }
        if let Some(c) = kept.filter(|c| is_go_printable(*c)) {
            buffer.push(c);
        }
    }
    match state {
        State::Nil | State::Comment => {}
        State::Value => {
            let value = unquote(buffer.trim_matches(is_go_space))
                .ok_or_else(|| bad(line, "unterminated quoted value"))?;
            let value = if role.is_empty() {
                value.to_string()
            } else {
                format!("{role}: {value}")
            };
            out.push((name, value));
        }
        _ => return Err(bad(line, "unexpected end of file")),
    }
    Ok(out)
}

/// A value without its quotes (`"""…"""` or `"…"`), or bare; None while a
/// quoted value is still open.
fn unquote(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix("\"\"\"") {
        return (s.len() >= 6)
            .then(|| rest.strip_suffix("\"\"\""))
            .flatten();
    }
    if let Some(rest) = s.strip_prefix('"') {
        return (s.len() >= 2).then(|| rest.strip_suffix('"')).flatten();
    }
    Some(s)
}

/// A Go template that renders as `template` but has no `"""` before a
/// space or line end in its text, where Ollama's parser would end the
/// value: an empty comment goes after each such `"""`. Actions are left as
/// they are.
fn guard_triple_quotes(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(action) = rest.strip_prefix("{{") {
            let end = action_end(action).map_or(rest.len(), |e| e + 4);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("\"\"\"") {
            out.push_str("\"\"\"");
            if after.starts_with(|c: char| c.is_whitespace()) {
                out.push_str("{{/**/}}");
            }
            rest = after;
            continue;
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Where `}}` closes an action whose text (after `{{`) is `action`,
/// skipping quoted strings and comments.
fn action_end(action: &str) -> Option<usize> {
    let bytes = action.as_bytes();
    let mut i = 0;
    if action
        .trim_start_matches('-')
        .trim_start()
        .starts_with("/*")
    {
        return action
            .find("*/")
            .and_then(|at| action[at..].find("}}").map(|e| at + e));
    }
    while i < bytes.len() {
        match bytes[i] {
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            quote @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if bytes[i] == b'\\' && quote != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `value` in the first Modelfile form that reads back as itself: a
/// multi-line value in `"""`, a template, system prompt or stop string in
/// `"`, anything else bare where it can be.
fn quote(command: &str, value: &str) -> Result<String> {
    let bare = value.to_string();
    let single = format!("\"{value}\"");
    let triple = format!("\"\"\"{value}\"\"\"");
    let forms = if value.contains('\n') {
        vec![triple, single]
    } else if matches!(command, "TEMPLATE" | "SYSTEM" | "PARAMETER stop") {
        vec![single, triple]
    } else {
        vec![bare, single, triple]
    };
    for form in forms {
        let text = format!("FROM x\n{command} {form}\n");
        if let Ok(back) = commands(&text) {
            if back.len() == 2 && back[1].1 == value {
                return Ok(form);
            }
        }
    }
    Err(Error::Invalid(format!(
        "Modelfile {command}: {value:?} cannot be written so that Ollama reads it back \
         (it has \"\"\" before a line end, or characters Ollama drops)"
    )))
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// Go's `unicode.IsSpace`, which `strings.TrimSpace` trims.
fn is_go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    ) || (c.is_whitespace() && c as u32 > 0xff)
}

/// Go's `strconv.IsPrint`, near enough: no control, format or separator
/// characters other than the ASCII space.
pub(crate) fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let format = matches!(
        c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
            | 0x2028..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb
            | 0xe0000..=0xe007f
    );
    !(c.is_control() || c.is_whitespace() || format)
}
