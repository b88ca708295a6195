//! Prompt-only data for GRPO: each record is a prompt to answer (a string,
//! or a list of messages), with an optional reference `answer` that the
//! exact-match reward compares with. `prompt` / `question` / `instruction`
//! (+ `input`) or `messages` hold the prompt; `answer` / `solution` /
//! `completion` / `output` the reference; a column mapping renames others.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::formats::{kind, Rows};
use super::records::{
    check_columns, openai_messages, rename_columns, string_field, train_file, OnBadRecord,
    ReadOptions, Skipped,
};
use crate::chat_template::{ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// One prompt as the user wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The conversation so far, ending with the user's turn.
    pub messages: Vec<Message>,
    pub answer: Option<String>,
}

/// A prompt rendered through the chat template, ready to continue.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptTokens {
    pub tokens: Vec<u32>,
    pub answer: Option<String>,
    /// Where it came from (`file:line`), for messages.
    pub location: String,
}

/// The prompts of a file.
#[derive(Debug, Clone)]
pub struct PromptSet {
    pub source: PathBuf,
    pub prompts: Vec<PromptTokens>,
    pub skipped: Vec<Skipped>,
    /// Prompts longer than the limit (left out, and counted).
    pub too_long: usize,
}

/// Reads and renders every prompt of `path` (a file or a folder's train
/// file); prompts longer than `max_prompt_tokens` are left out and counted.
pub fn read_prompts(
    path: &Path,
    options: &ReadOptions,
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    max_prompt_tokens: usize,
) -> Result<PromptSet> {
    check_columns(options)?;
    let file = train_file(path)?;
    let mut prompts = Vec::new();
    let mut skipped = Vec::new();
    let mut too_long = 0;
    for row in Rows::open(&file)? {
        let row = row?;
        let parsed = row
            .value
            .and_then(|v| parse_prompt(rename_columns(v, &options.columns)));
        let prompt = match parsed {
            Ok(p) => p,
            Err(reason) if options.on_bad_record == OnBadRecord::Skip => {
                skipped.push(Skipped {
                    location: row.location,
                    reason,
                });
                continue;
            }
            Err(reason) => {
                return Err(Error::Invalid(format!(
                    "{}{}: {reason}",
                    file.display(),
                    row.location
                )))
            }
        };
        let text = template
            .render(&prompt.messages, true)
            .map_err(|e| Error::Invalid(format!("{}{}: {e}", file.display(), row.location)))?;
        let tokens = tokenizer.encode(&text)?;
        if tokens.len() > max_prompt_tokens {
            too_long += 1;
            continue;
        }
        prompts.push(PromptTokens {
            tokens,
            answer: prompt.answer,
            location: format!("{}{}", file.display(), row.location),
        });
    }
    if prompts.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no usable prompts ({} unreadable, {too_long} longer than {max_prompt_tokens} tokens)",
            file.display(),
            skipped.len()
        )));
    }
    Ok(PromptSet {
        source: file,
        prompts,
        skipped,
        too_long,
    })
}

impl PromptSet {
    /// Prompts that carry a reference answer.
    pub fn with_answer(&self) -> usize {
        self.prompts.iter().filter(|p| p.answer.is_some()).count()
    }
}

/// The prompts' lengths, for the statistics every dataset gets (nothing is
/// trained in a prompt: the completions are sampled).
impl super::ExampleSource for PromptSet {
    fn example_count(&self) -> usize {
        self.prompts.len()
    }
    fn example_len(&self, i: usize) -> usize {
        self.prompts[i].tokens.len()
    }
    fn example_trained(&self, _: usize) -> usize {
        0
    }
    fn example_truncated(&self, _: usize) -> bool {
        false
    }
    fn example(&self, i: usize) -> Result<std::borrow::Cow<'_, super::Example>> {
        let tokens = self.prompts[i].tokens.clone();
        Ok(std::borrow::Cow::Owned(super::Example {
            trained: vec![false; tokens.len()],
            tokens,
            truncated: false,
        }))
    }
}

/// How many leading records [`is_prompt_data`] looks at.
const SHAPE_PROBE: usize = 32;

/// Whether `path` (a file, or a folder's train file) holds prompts only:
/// its first record that reads as anything reads as a prompt and not as a
/// training example (answers or preference pairs). Unreadable files are
/// not prompt data: reading them as examples then says what is wrong.
pub fn is_prompt_data(path: &Path, options: &ReadOptions) -> bool {
    let Ok(file) = train_file(path) else {
        return false;
    };
    let Ok(rows) = Rows::open(&file) else {
        return false;
    };
    for row in rows.take(SHAPE_PROBE) {
        let Ok(Ok(value)) = row.map(|r| r.value) else {
            continue;
        };
        let value = rename_columns(value, &options.columns);
        if super::records::parse_record(value.clone()).is_ok() {
            return false;
        }
        if parse_prompt(value).is_ok() {
            return true;
        }
    }
    false
}

fn first_string(
    object: &Map<String, Value>,
    names: &[&str],
) -> std::result::Result<Option<String>, String> {
    for name in names {
        if let Some(s) = string_field(object, name)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// A record → a prompt, or what is wrong with it.
pub fn parse_prompt(value: Value) -> std::result::Result<Prompt, String> {
    let object = match value {
        Value::Object(o) => o,
        other => return Err(format!("expected a JSON object, found {}", kind(&other))),
    };
    let mut answer = first_string(&object, &["answer", "solution"])?;
    let mut messages = match (object.get("prompt"), object.get("messages")) {
        (Some(list @ Value::Array(_)), _) | (None, Some(list)) => openai_messages(list)?,
        (Some(_), _) => {
            let text = string_field(&object, "prompt")?.unwrap_or_default();
            vec![Message::new("user", &text)]
        }
        (None, None) => {
            let question = first_string(&object, &["question", "instruction"])?;
            let Some(mut text) = question else {
                let keys: Vec<&str> = object.keys().map(String::as_str).collect();
                return Err(format!(
                    "no prompt in the record (keys [{}]): GRPO reads `prompt`, `question`, `instruction` or `messages`, with an optional `answer` (map other column names with --columns)",
                    keys.join(", ")
                ));
            };
            if let Some(input) = string_field(&object, "input")?.filter(|s| !s.trim().is_empty()) {
                text = format!("{text}\n\n{input}");
            }
            vec![Message::new("user", &text)]
        }
    };
    if answer.is_none() {
        answer = first_string(&object, &["completion", "output"])?;
    }
    // A conversation ending with the assistant: its reply is the reference.
    if messages.last().is_some_and(|m| m.role == "assistant") {
        let reply = messages.pop().expect("non-empty");
        answer = answer.or(Some(reply.content));
    }
    if let Some(system) = string_field(&object, "system")?.filter(|s| !s.is_empty()) {
        if messages.first().is_none_or(|m| m.role != "system") {
            messages.insert(0, Message::new("system", &system));
        }
    }
    if messages.iter().all(|m| m.content.trim().is_empty()) {
        return Err("the prompt is empty".into());
    }
    Ok(Prompt { messages, answer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_common_shapes_become_prompts_with_their_reference() {
        let p = parse_prompt(json!({"question": "2+2?", "answer": "#### 4"})).unwrap();
        assert_eq!(p.messages, vec![Message::new("user", "2+2?")]);
        assert_eq!(p.answer.as_deref(), Some("#### 4"));
        let p =
            parse_prompt(json!({"prompt": "Capital of France?", "system": "Be brief."})).unwrap();
        assert_eq!(p.messages[0], Message::new("system", "Be brief."));
        assert_eq!(p.answer, None);
        let p = parse_prompt(json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}
        ]}))
        .unwrap();
        assert_eq!(p.messages.len(), 1);
        assert_eq!(p.answer.as_deref(), Some("hello"));
        let p = parse_prompt(json!({"prompt": [{"role": "user", "content": "x"}], "solution": 7}))
            .unwrap();
        assert_eq!(p.answer.as_deref(), Some("7"));
        let p =
            parse_prompt(json!({"instruction": "Add", "input": "1 and 2", "output": "3"})).unwrap();
        assert_eq!(p.messages[0].content, "Add\n\n1 and 2");
        assert_eq!(p.answer.as_deref(), Some("3"));
    }

    #[test]
    fn records_without_a_prompt_say_what_is_missing() {
        let err = parse_prompt(json!({"text": "x"})).unwrap_err();
        assert!(
            err.contains("no prompt") && err.contains("keys [text]"),
            "{err}"
        );
        assert!(parse_prompt(json!({"prompt": "  "}))
            .unwrap_err()
            .contains("empty"));
        assert!(parse_prompt(json!(3)).unwrap_err().contains("JSON object"));
        assert!(parse_prompt(json!({"prompt": {"a": 1}})).is_err());
    }
}
