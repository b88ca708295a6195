//! Preference records: a prompt with a chosen and a rejected answer, in the
//! shapes people publish them —
//! - `prompt` / `chosen` / `rejected` as strings (TRL's "standard" form);
//! - `chosen` / `rejected` as message lists, with a shared `prompt` given
//!   as a string or a message list, or repeated at the head of each side
//!   (UltraFeedback-binarized), or left for us to find (TRL's
//!   "conversational" form);
//! - Anthropic HH: `chosen` / `rejected` full transcripts
//!   (`\n\nHuman: … \n\nAssistant: …`) whose common start is the prompt.

use serde_json::{Map, Value};

use super::records::{openai_messages, Record};
use super::ExampleSource;
use crate::chat_template::Message;

/// A prompt and two answers to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Pair {
    /// Messages: rendered with the chat template.
    Chat {
        prompt: Vec<Message>,
        chosen: Vec<Message>,
        rejected: Vec<Message>,
    },
    /// Plain strings: with a chat template, the prompt is the user's turn
    /// and each answer the assistant's; without, they are joined as text.
    Text {
        system: Option<String>,
        prompt: String,
        chosen: String,
        rejected: String,
    },
}

/// Whether a record's fields make it a preference pair.
pub(super) fn is_pair(object: &Map<String, Value>) -> bool {
    object.contains_key("chosen") || object.contains_key("rejected")
}

/// The pair in a record that has `chosen` and `rejected`.
pub(super) fn parse(object: &Map<String, Value>) -> Result<Record, String> {
    let (Some(chosen), Some(rejected)) = (present(object, "chosen"), present(object, "rejected"))
    else {
        return Err(
            "a preference record needs both `chosen` and `rejected` (and usually a `prompt`)"
                .into(),
        );
    };
    let system = match present(object, "system") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(format!("`system` must be a string, found {}", kind(other))),
    };
    let prompt = present(object, "prompt");
    let pair = match (chosen, rejected) {
        (Value::String(c), Value::String(r)) => match prompt {
            Some(Value::String(p)) => Pair::Text {
                system,
                prompt: p.clone(),
                chosen: c.clone(),
                rejected: r.clone(),
            },
            Some(Value::Array(_)) => {
                let prompt = messages("prompt", prompt.expect("matched"))?;
                Pair::Chat {
                    prompt: with_system(system, prompt),
                    chosen: vec![Message::new("assistant", c)],
                    rejected: vec![Message::new("assistant", r)],
                }
            }
            Some(other) => {
                return Err(format!(
                    "`prompt` must be a string or a list of messages, found {}",
                    kind(other)
                ))
            }
            None => transcripts(c, r, system)?,
        },
        (c @ Value::Array(_), r @ Value::Array(_)) => {
            let c = messages("chosen", c)?;
            let r = messages("rejected", r)?;
            let prompt = match prompt {
                None => None,
                Some(Value::String(p)) => Some(vec![Message::new("user", p)]),
                Some(p @ Value::Array(_)) => Some(messages("prompt", p)?),
                Some(other) => {
                    return Err(format!(
                        "`prompt` must be a string or a list of messages, found {}",
                        kind(other)
                    ))
                }
            };
            let (prompt, c, r) = split_messages(prompt, c, r)?;
            Pair::Chat {
                prompt: with_system(system, prompt),
                chosen: c,
                rejected: r,
            }
        }
        (c, r) => {
            return Err(format!(
                "`chosen` and `rejected` must both be strings or both lists of messages, found {} and {}",
                kind(c),
                kind(r)
            ))
        }
    };
    check(&pair)?;
    Ok(Record::Preference(Box::new(pair)))
}

fn present<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).filter(|v| !v.is_null())
}

fn kind(v: &Value) -> &'static str {
    super::formats::kind(v)
}

fn messages(field: &str, value: &Value) -> Result<Vec<Message>, String> {
    openai_messages(value).map_err(|e| format!("`{field}`: {e}"))
}

fn with_system(system: Option<String>, mut prompt: Vec<Message>) -> Vec<Message> {
    if let Some(system) = system {
        if prompt.first().is_none_or(|m| m.role != "system") {
            prompt.insert(0, Message::new("system", &system));
        }
    }
    prompt
}

/// A pair's messages: (prompt, chosen answer, rejected answer).
type SplitMessages = (Vec<Message>, Vec<Message>, Vec<Message>);

/// The prompt and each side's own messages: a given prompt is taken off the
/// head of both sides when they repeat it; without one, the sides' common
/// head is the prompt.
fn split_messages(
    prompt: Option<Vec<Message>>,
    chosen: Vec<Message>,
    rejected: Vec<Message>,
) -> Result<SplitMessages, String> {
    match prompt {
        Some(p) if chosen.starts_with(&p) && rejected.starts_with(&p) => {
            let n = p.len();
            Ok((p, chosen[n..].to_vec(), rejected[n..].to_vec()))
        }
        Some(p) => Ok((p, chosen, rejected)),
        None => {
            let common = chosen
                .iter()
                .zip(&rejected)
                .take_while(|(a, b)| a == b)
                .count();
            // The answers start at the first assistant message after the
            // shared head (a shared assistant turn belongs to the prompt).
            Ok((
                chosen[..common].to_vec(),
                chosen[common..].to_vec(),
                rejected[common..].to_vec(),
            ))
        }
    }
}

/// Anthropic HH: two transcripts sharing everything up to the last
/// assistant turn. Parsed into messages where they use HH's markers;
/// otherwise the common start of the two strings is the prompt.
fn transcripts(chosen: &str, rejected: &str, system: Option<String>) -> Result<Pair, String> {
    if let (Some(c), Some(r)) = (hh_messages(chosen), hh_messages(rejected)) {
        let (prompt, c, r) = split_messages(None, c, r)?;
        return Ok(Pair::Chat {
            prompt: with_system(system, prompt),
            chosen: c,
            rejected: r,
        });
    }
    let mut common = chosen
        .char_indices()
        .zip(rejected.chars())
        .take_while(|((_, a), b)| a == b)
        .map(|((i, a), _)| i + a.len_utf8())
        .last()
        .unwrap_or(0);
    // Cut at a word's start, so neither answer begins mid-word.
    while common > 0 && !chosen[..common].ends_with(char::is_whitespace) {
        common = chosen[..common]
            .char_indices()
            .last()
            .map(|(i, _)| i)
            .unwrap_or(0);
    }
    if common == 0 {
        return Err(
            "a preference record without `prompt` needs `chosen` and `rejected` that share their start (the prompt), as Anthropic HH's transcripts do".into(),
        );
    }
    Ok(Pair::Text {
        system,
        prompt: chosen[..common].to_string(),
        chosen: chosen[common..].to_string(),
        rejected: rejected[common..].to_string(),
    })
}

/// `\n\nHuman: …\n\nAssistant: …` as messages (None without the markers).
fn hh_messages(text: &str) -> Option<Vec<Message>> {
    const HUMAN: &str = "Human:";
    const ASSISTANT: &str = "Assistant:";
    let mut out: Vec<Message> = Vec::new();
    let mut rest = text.trim_start();
    if !rest.starts_with(HUMAN) {
        return None;
    }
    while !rest.is_empty() {
        let (role, marker) = if rest.starts_with(HUMAN) {
            ("user", HUMAN)
        } else if rest.starts_with(ASSISTANT) {
            ("assistant", ASSISTANT)
        } else {
            return None;
        };
        rest = &rest[marker.len()..];
        let end = [
            rest.find(&format!("\n\n{HUMAN}")),
            rest.find(&format!("\n\n{ASSISTANT}")),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
        out.push(Message::new(role, rest[..end].trim()));
        rest = rest[end..].trim_start();
    }
    out.iter().any(|m| m.role == "assistant").then_some(out)
}

/// Both answers present, different, and (as messages) with a reply to learn.
fn check(pair: &Pair) -> Result<(), String> {
    match pair {
        Pair::Chat {
            chosen, rejected, ..
        } => {
            for (side, messages) in [("chosen", chosen), ("rejected", rejected)] {
                if !messages.iter().any(|m| m.role == "assistant") {
                    return Err(format!(
                        "the {side} answer has no assistant message (after the shared prompt)"
                    ));
                }
            }
            if chosen == rejected {
                return Err("`chosen` and `rejected` are the same answer".into());
            }
        }
        Pair::Text {
            chosen, rejected, ..
        } => {
            if chosen.trim().is_empty() || rejected.trim().is_empty() {
                return Err("`chosen` and `rejected` must both be non-empty".into());
            }
            if chosen == rejected {
                return Err("`chosen` and `rejected` are the same answer".into());
            }
        }
    }
    Ok(())
}

/// One side of a tokenized preference set: the chosen answers (`0`) or the
/// rejected ones (`1`), example i being the set's 2i + side.
pub struct Side<'a, S: ExampleSource + ?Sized>(pub &'a S, pub usize);

impl<S: ExampleSource + ?Sized> ExampleSource for Side<'_, S> {
    fn example_count(&self) -> usize {
        self.0.example_count() / 2
    }
    fn example_len(&self, i: usize) -> usize {
        self.0.example_len(2 * i + self.1)
    }
    fn example_trained(&self, i: usize) -> usize {
        self.0.example_trained(2 * i + self.1)
    }
    fn example_truncated(&self, i: usize) -> bool {
        self.0.example_truncated(2 * i + self.1)
    }
    fn example(&self, i: usize) -> crate::Result<std::borrow::Cow<'_, super::Example>> {
        self.0.example(2 * i + self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pair(v: Value) -> Result<Pair, String> {
        match parse(v.as_object().unwrap())? {
            Record::Preference(p) => Ok(*p),
            other => panic!("not a pair: {other:?}"),
        }
    }

    #[test]
    fn standard_strings() {
        let p = pair(json!({"prompt": "2+2?", "chosen": "4", "rejected": "5"})).unwrap();
        assert_eq!(
            p,
            Pair::Text {
                system: None,
                prompt: "2+2?".into(),
                chosen: "4".into(),
                rejected: "5".into()
            }
        );
    }

    #[test]
    fn ultrafeedback_repeats_the_prompt_in_each_side() {
        let p = pair(json!({
            "prompt": "Hi?",
            "chosen": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}],
        }))
        .unwrap();
        let Pair::Chat {
            prompt,
            chosen,
            rejected,
        } = p
        else {
            panic!()
        };
        assert_eq!(prompt, vec![Message::new("user", "Hi?")]);
        assert_eq!(chosen, vec![Message::new("assistant", "Hello!")]);
        assert_eq!(rejected, vec![Message::new("assistant", "Go away.")]);
    }

    #[test]
    fn conversational_prompt_list_and_common_head() {
        let p = pair(json!({
            "prompt": [{"role": "user", "content": "Q"}],
            "chosen": [{"role": "assistant", "content": "A"}],
            "rejected": [{"role": "assistant", "content": "B"}],
        }))
        .unwrap();
        assert!(matches!(p, Pair::Chat { ref prompt, .. } if prompt.len() == 1));
        let p = pair(json!({
            "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
            "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}],
        }))
        .unwrap();
        assert!(
            matches!(p, Pair::Chat { ref prompt, ref chosen, .. } if prompt.len() == 1 && chosen[0].content == "A")
        );
    }

    #[test]
    fn anthropic_hh_transcripts() {
        let p = pair(json!({
            "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: Sure?\n\nAssistant: Yes, 4.",
            "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: Sure?\n\nAssistant: No idea.",
        }))
        .unwrap();
        let Pair::Chat {
            prompt,
            chosen,
            rejected,
        } = p
        else {
            panic!()
        };
        assert_eq!(prompt.len(), 3);
        assert_eq!(prompt[1], Message::new("assistant", "4."));
        assert_eq!(chosen, vec![Message::new("assistant", "Yes, 4.")]);
        assert_eq!(rejected, vec![Message::new("assistant", "No idea.")]);
    }

    #[test]
    fn plain_transcripts_split_at_their_common_start() {
        let p = pair(
            json!({"chosen": "Q: sky colour? A: blue", "rejected": "Q: sky colour? A: green"}),
        )
        .unwrap();
        assert_eq!(
            p,
            Pair::Text {
                system: None,
                prompt: "Q: sky colour? A: ".into(),
                chosen: "blue".into(),
                rejected: "green".into()
            }
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = pair(json!({"prompt": "x", "chosen": "a"})).unwrap_err();
        assert!(e.contains("both `chosen` and `rejected`"), "{e}");
        let e = pair(json!({"prompt": "x", "chosen": "a", "rejected": "a"})).unwrap_err();
        assert!(e.contains("the same answer"), "{e}");
        let e = pair(json!({"prompt": "x", "chosen": "a", "rejected": [1]})).unwrap_err();
        assert!(e.contains("both be strings or both lists"), "{e}");
        let e = pair(json!({"chosen": "abc", "rejected": "xyz"})).unwrap_err();
        assert!(e.contains("share their start"), "{e}");
        let e = pair(json!({
            "prompt": [{"role": "user", "content": "Q"}],
            "chosen": [{"role": "user", "content": "A"}],
            "rejected": [{"role": "assistant", "content": "B"}],
        }))
        .unwrap_err();
        assert!(e.contains("chosen answer has no assistant"), "{e}");
    }
}
