//! Choosing the chat template a dataset is rendered with: the model's own
//! (the default), a built-in one by name, or a Jinja file. Every built-in
//! renders conversations incrementally (each prefix of a conversation
//! renders to a prefix of the whole), which is what lets `tokenize` find the
//! assistant's turns in any of them.

use std::path::Path;

use serde::Serialize;

use crate::chat_template::{ChatTemplate, Message};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// A built-in template: its name, Jinja source, and the special tokens it
/// relies on (checked against the tokenizer).
struct Builtin {
    name: &'static str,
    source: &'static str,
    special_tokens: &'static [&'static str],
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "chatml",
        source: "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        special_tokens: &["<|im_start|>", "<|im_end|>"],
    },
    Builtin {
        name: "alpaca",
        source: "{% for m in messages %}{% if not loop.first %}\n\n{% endif %}\
{% if m.role == 'system' %}{{ m.content }}\
{% elif m.role == 'assistant' %}### Response:\n{{ m.content }}{{ eos_token }}\
{% else %}### Instruction:\n{{ m.content }}{% endif %}{% endfor %}\
{% if add_generation_prompt %}{% if messages %}\n\n{% endif %}### Response:\n{% endif %}",
        special_tokens: &[],
    },
    Builtin {
        name: "llama-2",
        source: "{% set has_system = messages and messages[0].role == 'system' %}\
{% set system = '<<SYS>>\n' ~ messages[0].content ~ '\n<</SYS>>\n\n' if has_system else '' %}\
{% for m in (messages[1:] if has_system else messages) %}\
{% if m.role == 'assistant' %} {{ m.content | trim }} {{ eos_token }}\
{% else %}{{ bos_token }}[INST] {% if loop.first %}{{ system }}{% endif %}{{ m.content | trim }} [/INST]{% endif %}\
{% endfor %}",
        special_tokens: &[],
    },
    Builtin {
        name: "llama-3",
        source: "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n\
{{ m.content | trim }}<|eot_id|>{% endfor %}\
{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
        special_tokens: &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    },
    Builtin {
        name: "mistral",
        source: "{% set has_system = messages and messages[0].role == 'system' %}\
{{ bos_token }}{% for m in (messages[1:] if has_system else messages) %}\
{% if m.role == 'assistant' %}{{ m.content | trim }}{{ eos_token }}\
{% else %}[INST] {% if loop.first and has_system %}{{ messages[0].content | trim }}\n\n{% endif %}{{ m.content | trim }} [/INST]{% endif %}\
{% endfor %}",
        special_tokens: &[],
    },
    Builtin {
        name: "zephyr",
        source: "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{{ eos_token }}\n{% endfor %}\
{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
        special_tokens: &["<|user|>", "<|assistant|>", "<|system|>"],
    },
    Builtin {
        name: "vicuna",
        source: "{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}\n\n\
{% elif m.role == 'assistant' %}ASSISTANT: {{ m.content }}{{ eos_token }}\n\
{% else %}USER: {{ m.content }}\n{% endif %}{% endfor %}\
{% if add_generation_prompt %}ASSISTANT:{% endif %}",
        special_tokens: &[],
    },
    Builtin {
        name: "gemma",
        source: "{{ bos_token }}{% for m in messages %}\
<start_of_turn>{{ 'model' if m.role == 'assistant' else 'user' }}\n{{ m.content | trim }}<end_of_turn>\n{% endfor %}\
{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}",
        special_tokens: &["<start_of_turn>", "<end_of_turn>"],
    },
    Builtin {
        name: "phi-3",
        source: "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>\n{% endfor %}\
{% if add_generation_prompt %}<|assistant|>\n{% endif %}",
        special_tokens: &["<|user|>", "<|assistant|>", "<|end|>"],
    },
    Builtin {
        name: "raw",
        source: "{% for m in messages %}{{ m.content }}{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}",
        special_tokens: &[],
    },
];

/// Names accepted by `--template` besides a file path: `model` (the
/// model's own, the default) and the built-ins.
pub fn names() -> Vec<&'static str> {
    std::iter::once("model")
        .chain(BUILTINS.iter().map(|b| b.name))
        .collect()
}

/// The chosen template and anything worth warning about.
pub struct Resolved {
    pub template: ChatTemplate,
    /// `model`, a built-in's name, or the file given.
    pub name: String,
    pub warnings: Vec<String>,
}

/// Serializable description (for the app and `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct TemplateInfo {
    pub name: String,
    pub warnings: Vec<String>,
}

/// Picks the template `spec` names (None or `model`: the model's own,
/// falling back with a warning, when the model has none, to the built-in
/// whose markers its vocabulary has — a base Gemma gets Gemma's turns —
/// or chatml).
pub fn resolve(
    spec: Option<&str>,
    model_template: Option<&ChatTemplate>,
    tokenizer: &Tokenizer,
) -> Result<Resolved> {
    let bos = tokenizer.bos_token.as_deref();
    let eos = tokenizer.eos_token.as_deref();
    let mut warnings = Vec::new();
    let (template, name, declared): (ChatTemplate, String, Option<&[&str]>) = match spec {
        None | Some("model") | Some("auto") => match model_template {
            Some(t) => (
                ChatTemplate::new(&t.source, bos, eos)?,
                "model".to_string(),
                None,
            ),
            None => {
                let b = vocabulary_builtin(tokenizer);
                warnings.push(format!(
                    "the model has no chat template of its own; using {}",
                    b.name
                ));
                (
                    ChatTemplate::new(b.source, bos, eos)?,
                    "chatml".into(),
                    Some(b.special_tokens),
                )
            }
        },
        Some(name) => match builtin(name) {
            Some(b) => (
                ChatTemplate::new(b.source, bos, eos)?,
                b.name.to_string(),
                Some(b.special_tokens),
            ),
            None if Path::new(name).is_file() => {
                let source = std::fs::read_to_string(name).map_err(|source| Error::Io {
                    path: name.into(),
                    source,
                })?;
                let template = ChatTemplate::new(&source, bos, eos)
                    .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
                (template, name.to_string(), None)
            }
            None => {
                return Err(Error::Invalid(format!(
                    "unknown template `{name}`: use one of {}, or the path of a Jinja file",
                    names().join(", ")
                )))
            }
        },
    };
    let tokens: Vec<String> = match declared {
        Some(list) => list.iter().map(|t| t.to_string()).collect(),
        None => special_looking_tokens(&template),
    };
    let unknown: Vec<String> = tokens
        .into_iter()
        .filter(|t| tokenizer.token_to_id(t).is_none())
        .collect();
    if !unknown.is_empty() {
        warnings.push(format!(
            "template `{name}` uses {}, which the model's tokenizer does not know as tokens: \
             they will be split into ordinary pieces and learned from scratch",
            unknown.join(", ")
        ));
    }
    if template.source.contains("eos_token") && eos.is_none() {
        warnings.push(format!(
            "template `{name}` ends turns with eos_token, but the tokenizer has none"
        ));
    }
    Ok(Resolved {
        template,
        name,
        warnings,
    })
}

/// The first built-in chat format whose markers are all tokens of the
/// vocabulary, else chatml.
fn vocabulary_builtin(tokenizer: &Tokenizer) -> &'static Builtin {
    BUILTINS
        .iter()
        .find(|b| {
            !b.special_tokens.is_empty()
                && b.special_tokens
                    .iter()
                    .all(|t| tokenizer.token_to_id(t).is_some())
        })
        .unwrap_or_else(|| builtin("chatml").expect("chatml is built in"))
}

fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Marker tokens (`<|…|>`, `<start_of_turn>`-like) a template writes into a
/// small sample conversation.
fn special_looking_tokens(template: &ChatTemplate) -> Vec<String> {
    let sample = [
        Message::new("system", "s"),
        Message::new("user", "u"),
        Message::new("assistant", "a"),
    ];
    let Ok(text) = template.render(&sample, true) else {
        return Vec::new();
    };
    let mut found: Vec<String> = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find('<') {
        let tail = &rest[start..];
        let end = tail.find('>').map(|e| e + 1);
        if let Some(end) = end {
            let candidate = &tail[..end];
            let inner = &candidate[1..candidate.len() - 1];
            let marker = (inner.starts_with('|') && inner.ends_with('|') && inner.len() > 2)
                || (inner.contains('_')
                    && inner.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            if marker && !found.iter().any(|f| f == candidate) {
                found.push(candidate.to_string());
            }
        }
        rest = &tail[1..];
    }
    found
}
