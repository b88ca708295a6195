//! A model's Jinja chat template translated to Ollama's Go-template syntax.
//!
//! Nothing here knows a template by name. The Jinja template is rendered on
//! probe conversations whose contents are sentinels; the text between two
//! contents is what the template writes between those two turns. Each such
//! text is keyed by the roles around it (and, for an assistant turn, by
//! whether it ends the conversation, as Qwen3's think tags need), and the
//! Go template replays them over Ollama's `.Messages`. A system prompt the
//! template inserts when a conversation has none becomes the Modelfile's
//! `SYSTEM`. The result is then rendered next to the Jinja template on
//! realistic conversations; any difference is an error, never a silently
//! wrong template.
//!
//! Ollama's side, as its server does it: the Modelfile's `SYSTEM` is put
//! first when the conversation does not start with a system message,
//! consecutive messages of one role are joined with a blank line, and the
//! prompt ends where the model's reply starts (a conversation that ends
//! with an assistant message is continued, not closed). Ollama's tokenizer
//! adds BOS itself when the GGUF says so (`tokenizer.ggml.add_bos_token`),
//! so the template then leaves the template's leading BOS out.
//!
//! Reproduced: ChatML (with or without a default system prompt), Gemma's
//! system prompt merged into the first user turn, Llama 2's `[INST]` with
//! `<<SYS>>` and BOS per turn, Llama 3 (its dated system header included),
//! Phi-3, DeepSeek, Qwen3's think block on a final assistant turn. Refused:
//! templates whose text around a turn depends on more than the roles
//! (turn numbers, the system prompt moved to the last user turn as
//! Mistral Nemo's does), that alter contents, or that do not render a
//! user/assistant conversation. Not carried: tools (`.Tools` is ignored,
//! tool messages get no text around them) and content trimming (Ollama
//! passes contents as sent; the check uses contents without edge spaces).

use std::collections::HashMap;

use gtmpl::{Func, FuncError, Value};

use crate::chat_template::{ChatTemplate, Message};
use crate::error::{Error, Result};

/// What a Modelfile needs from a chat template.
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaTemplate {
    /// The Go template (Modelfile `TEMPLATE`).
    pub template: String,
    /// The end-of-turn strings (`PARAMETER stop`), the tokenizer's EOS included.
    pub stops: Vec<String>,
    /// The system prompt the template uses when a conversation has none
    /// (Modelfile `SYSTEM`).
    pub system: Option<String>,
}

const SYSTEM: &str = "system";
const USER: &str = "user";
const ASSISTANT: &str = "assistant";

/// Where a piece of template text stands: before a message of `role`
/// (after one of `prev`, or first), or after the last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Slot {
    /// Before a message: the previous role (None: the first message), its
    /// role, and whether it is an assistant message that ends the
    /// conversation (which Ollama continues).
    Before {
        prev: Option<&'static str>,
        role: &'static str,
        last_assistant: bool,
    },
    /// After the last message, which is of this role: where the reply starts.
    Generation(&'static str),
}

/// How a probe conversation may fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Every chat template must render it with each content in order.
    Required,
    /// A shape some templates refuse (system messages, as Gemma 2's does;
    /// an assistant first): learnt where the template renders it.
    Optional,
    /// Also skipped where a content is missing (a lone system message,
    /// which Gemma 3's template holds back for a user turn, or one before
    /// an assistant turn).
    Loose,
}

/// The probe conversations: (roles, add_generation_prompt, kind).
const PROBES: &[(&[&str], bool, Probe)] = &[
    (
        &[USER, ASSISTANT, USER, ASSISTANT, USER],
        true,
        Probe::Required,
    ),
    (&[USER, ASSISTANT], false, Probe::Required),
    (
        &[SYSTEM, USER, ASSISTANT, USER, ASSISTANT, USER],
        true,
        Probe::Optional,
    ),
    (&[SYSTEM, USER, ASSISTANT], false, Probe::Optional),
    (&[USER], true, Probe::Optional),
    (&[SYSTEM, USER], true, Probe::Optional),
    // Templates that fold the system prompt into the first user turn
    // (Llama 2, Mistral) have nowhere to put it before an assistant turn.
    (&[SYSTEM, ASSISTANT, USER], true, Probe::Loose),
    (&[ASSISTANT, USER], true, Probe::Optional),
    (&[SYSTEM], true, Probe::Loose),
];

/// Translates `chat` into an Ollama template. `adds_bos`: the runtime puts
/// BOS before the prompt itself (the GGUF's `tokenizer.ggml.add_bos_token`),
/// so a leading BOS in the template is left out.
pub fn translate(chat: &ChatTemplate, adds_bos: bool) -> Result<OllamaTemplate> {
    let strip_bos = adds_bos && !chat.bos_token.is_empty();
    let expected = |messages: &[Message], generation: bool| -> Result<String> {
        let text = chat.render(messages, generation)?;
        Ok(match text.strip_prefix(chat.bos_token.as_str()) {
            Some(rest) if strip_bos => rest.to_string(),
            _ => text,
        })
    };

    let mut slots: HashMap<Slot, String> = HashMap::new();
    let mut assistant_end = None;
    for &(roles, generation, kind) in PROBES {
        let messages = probe(roles);
        let text = match expected(&messages, generation) {
            Ok(text) => text,
            Err(_) if kind != Probe::Required => continue,
            Err(e) => return Err(refusal(chat, &format!("{e} (on a {})", describe(roles)))),
        };
        let Some(pieces) = split(&text, &messages) else {
            if kind == Probe::Loose {
                continue;
            }
            return Err(refusal(
                chat,
                &format!(
                    "it does not write each message's content as given, in order (on a {})",
                    describe(roles)
                ),
            ));
        };
        for (i, piece) in pieces.iter().enumerate() {
            let slot = match i {
                i if i < roles.len() => Slot::Before {
                    prev: i.checked_sub(1).map(|p| roles[p]),
                    role: roles[i],
                    last_assistant: !generation && i + 1 == roles.len() && roles[i] == ASSISTANT,
                },
                _ if generation => Slot::Generation(roles[roles.len() - 1]),
                _ => {
                    if roles[roles.len() - 1] == ASSISTANT {
                        assistant_end = Some(piece.clone());
                    }
                    continue;
                }
            };
            learn(chat, &mut slots, slot, piece)?;
        }
    }

    let system = default_system(&slots);
    let template = emit(&slots);
    let translated = OllamaTemplate {
        template,
        stops: stops(assistant_end.as_deref().unwrap_or(""), &chat.eos_token),
        system,
    };
    let translated = verify(chat, translated, &expected)?;
    Ok(translated)
}

/// Records `piece` for `slot`; a slot seen twice with different texts is a
/// template whose turns depend on more than the roles around them.
fn learn(
    chat: &ChatTemplate,
    slots: &mut HashMap<Slot, String>,
    slot: Slot,
    piece: &str,
) -> Result<()> {
    match slots.get(&slot) {
        Some(known) if known != piece => Err(refusal(
            chat,
            &format!(
                "it writes {} as {known:?} in one conversation and as {piece:?} in another; \
                 an Ollama template can only tell turns apart by their roles",
                slot_name(slot)
            ),
        )),
        Some(_) => Ok(()),
        None => {
            slots.insert(slot, piece.to_string());
            Ok(())
        }
    }
}

fn slot_name(slot: Slot) -> String {
    let a = |role: &str| if role == ASSISTANT { "an" } else { "a" };
    match slot {
        Slot::Before {
            prev: None, role, ..
        } => format!("the text before a first {role} message"),
        Slot::Before {
            prev: Some(prev),
            role,
            last_assistant,
        } => format!(
            "the text between {} {prev} and {} {role} message",
            a(prev),
            if last_assistant { "a final" } else { a(role) }
        ),
        Slot::Generation(role) => format!("the generation prompt after {} {role} message", a(role)),
    }
}

/// Sentinel contents, one per message, that no template writes itself.
fn probe(roles: &[&str]) -> Vec<Message> {
    roles
        .iter()
        .enumerate()
        .map(|(i, role)| Message::new(role, &format!("Qz{role}{i}Zq")))
        .collect()
}

fn describe(roles: &[&str]) -> String {
    format!("{} conversation", roles.join("/"))
}

/// `text` cut around each message's content, in order: the n + 1 pieces
/// before, between and after them.
fn split(text: &str, messages: &[Message]) -> Option<Vec<String>> {
    let mut pieces = Vec::with_capacity(messages.len() + 1);
    let mut rest = text;
    for message in messages {
        let at = rest.find(&message.content)?;
        pieces.push(rest[..at].to_string());
        rest = &rest[at + message.content.len()..];
    }
    pieces.push(rest.to_string());
    Some(pieces)
}

/// The system prompt a template writes when a conversation has none: the
/// text before a first user message is then the text before a system
/// message, the prompt, and the text between a system and a user message.
fn default_system(slots: &HashMap<Slot, String>) -> Option<String> {
    let first = |role| Slot::Before {
        prev: None,
        role,
        last_assistant: false,
    };
    let before_user = slots.get(&first(USER))?;
    let before_system = slots.get(&first(SYSTEM))?;
    let between = slots.get(&Slot::Before {
        prev: Some(SYSTEM),
        role: USER,
        last_assistant: false,
    })?;
    let inner = before_user
        .strip_prefix(before_system.as_str())?
        .strip_suffix(between.as_str())?;
    (!inner.trim().is_empty()).then(|| inner.to_string())
}

/// The stop strings: the first token of what ends an assistant turn (its
/// special token, e.g. `<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`: a
/// `<…>` or `[…]` marker, else the first word) and the tokenizer's EOS.
fn stops(assistant_end: &str, eos: &str) -> Vec<String> {
    let end = assistant_end.trim_start();
    let marker = [('<', '>'), ('[', ']')].iter().find_map(|&(open, close)| {
        end.strip_prefix(open)?;
        end.find(close).map(|at| &end[..at + close.len_utf8()])
    });
    let mut stops = Vec::new();
    if let Some(first) = marker.or_else(|| end.split_whitespace().next()) {
        stops.push(first.to_string());
    }
    if !eos.is_empty() && !stops.iter().any(|s| s == eos) {
        stops.push(eos.to_string());
    }
    stops
}

/// The Go template replaying `slots`: before the messages, the text before
/// the first one; after each, the text before the next one (by the two
/// roles), or the generation prompt after the last. Every literal is a Go
/// string, so the layout whitespace (trimmed by `{{-`) never touches it.
fn emit(slots: &HashMap<Slot, String>) -> String {
    let mut sorted: Vec<(&Slot, &String)> = slots.iter().collect();
    sorted.sort();
    let mut first = Vec::new();
    let mut between = Vec::new();
    let mut generation = Vec::new();
    for (slot, text) in sorted {
        match *slot {
            Slot::Before {
                prev: None,
                role,
                last_assistant: false,
            } => first.push((format!("eq .Role {}", go_string(role)), text.clone())),
            Slot::Before { prev: None, .. } => {}
            Slot::Before {
                prev: Some(prev),
                role,
                last_assistant,
            } => {
                let other = Slot::Before {
                    prev: Some(prev),
                    role,
                    last_assistant: !last_assistant,
                };
                let differs = slots.get(&other).is_some_and(|t| t != text);
                let mut condition = format!(
                    "and (eq $m.Role {}) (eq $next.Role {})",
                    go_string(prev),
                    go_string(role)
                );
                if differs {
                    let count = if last_assistant { "eq" } else { "ne" };
                    condition = format!("{condition} ({count} (len $rest) 2)");
                } else if last_assistant && slots.contains_key(&other) {
                    continue;
                }
                between.push((condition, text.clone()));
            }
            Slot::Generation(role) => {
                generation.push((format!("eq .Role {}", go_string(role)), text.clone()))
            }
        }
    }
    let mut out = String::new();
    out.push_str("{{- with .Messages }}{{- with index . 0 }}");
    out.push_str(&chain(&first));
    out.push_str("{{- end }}{{- end }}\n");
    out.push_str("{{- range $i, $m := .Messages }}\n");
    out.push_str("{{- .Content }}\n");
    out.push_str("{{- $rest := slice $.Messages $i }}\n");
    out.push_str("{{- if eq (len $rest) 1 }}");
    out.push_str(&chain(&generation));
    out.push_str("\n{{- else }}{{- $next := index $rest 1 }}");
    out.push_str(&chain(&between));
    out.push_str("\n{{- end }}\n{{- end }}");
    out
}

/// `{{ if A }}"a"{{ else if B }}"b"{{ end }}` over (condition, text) pairs.
fn chain(branches: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (condition, text)) in branches.iter().enumerate() {
        let keyword = if i == 0 { "if" } else { "else if" };
        out.push_str(&format!("\n{{{{- {keyword} {condition} }}}}"));
        if !text.is_empty() {
            out.push_str(&format!("{{{{ {} }}}}", go_string(text)));
        }
    }
    if !branches.is_empty() {
        out.push_str("\n{{- end }}");
    }
    out
}

/// `text` as a Go interpreted string literal.
fn go_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Ollama's Modelfile parser drops what Go does not print.
            c if !super::ollama::is_go_printable(c) && (c as u32) <= 0xffff => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if !super::ollama::is_go_printable(c) => {
                out.push_str(&format!("\\U{:08x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Conversations the translation must reproduce: (messages, whether the
/// assistant's reply comes next; else the last assistant message is
/// continued).
fn checks() -> Vec<(&'static str, Vec<Message>, bool)> {
    let system = Message::new(SYSTEM, "You answer in one line.\nNever say \"no\".");
    let turns = [
        Message::new(USER, "What is {{ 2 + 2 }}?"),
        Message::new(ASSISTANT, "It is 4 \\ four."),
        Message::new(USER, "And \"\"\" times three?\n\nShow it."),
        Message::new(ASSISTANT, "12."),
        Message::new(USER, "Thanks!"),
    ];
    let with_system = |n: usize| {
        let mut messages = vec![system.clone()];
        messages.extend_from_slice(&turns[..n]);
        messages
    };
    vec![
        (
            "multi-turn conversation with a system message",
            with_system(5),
            true,
        ),
        (
            "multi-turn conversation without a system message",
            turns.to_vec(),
            true,
        ),
        ("one user message", turns[..1].to_vec(), true),
        ("system and user message", with_system(1), true),
        (
            "conversation ending with an assistant message",
            turns[..4].to_vec(),
            false,
        ),
        ("system, user and assistant message", with_system(2), false),
    ]
}

/// Renders `translated` next to the Jinja template on [`checks`] (and,
/// with its `SYSTEM`, on the conversations without one); drops a `SYSTEM`
/// that does not reproduce the template, and refuses any other difference.
fn verify(
    chat: &ChatTemplate,
    mut translated: OllamaTemplate,
    expected: &dyn Fn(&[Message], bool) -> Result<String>,
) -> Result<OllamaTemplate> {
    for (name, messages, generation) in checks() {
        let Ok(mut want) = expected(&messages, generation) else {
            continue; // the Jinja template refuses this shape itself
        };
        if !generation {
            // Ollama continues the last message: the text ends with it.
            let last = messages[messages.len() - 1].content.trim();
            match want.rfind(last) {
                Some(at) => want.truncate(at + last.len()),
                None => continue,
            }
        }
        let got = render_ollama(&translated.template, &messages, None)?;
        compare(chat, name, &want, &got)?;
        if let (Some(system), false) = (&translated.system, messages[0].role == SYSTEM) {
            let got = render_ollama(&translated.template, &messages, Some(system))?;
            if got != want {
                translated.system = None;
            }
        }
    }
    Ok(translated)
}

fn compare(chat: &ChatTemplate, name: &str, want: &str, got: &str) -> Result<()> {
    if want == got {
        return Ok(());
    }
    let at = first_difference(want, got);
    let around = |s: &str| around(s, at);
    Err(refusal(
        chat,
        &format!(
            "the Ollama template differs from it on a {name} at byte {at}: \
             the chat template writes {:?}, the Ollama template {:?}",
            around(want),
            around(got)
        ),
    ))
}

/// The byte where two texts first differ (the shorter one's length when one
/// begins the other).
pub(crate) fn first_difference(want: &str, got: &str) -> usize {
    want.char_indices()
        .zip(got.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or_else(|| want.len().min(got.len()))
}

/// Up to 50 characters of `s` from a little before byte `at`.
pub(crate) fn around(s: &str, at: usize) -> String {
    let start = floor_boundary(s, at.saturating_sub(20));
    s[start..].chars().take(50).collect()
}

/// The largest character boundary of `s` at or before `at`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The error for a template this translation cannot reproduce, naming the
/// template by its first line.
fn refusal(chat: &ChatTemplate, why: &str) -> Error {
    let head: String = chat
        .source
        .trim_start()
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(60)
        .collect();
    Error::Invalid(format!(
        "cannot translate the chat template starting {head:?} to an Ollama template: {why}"
    ))
}

/// Renders the Go `template` as Ollama does for a chat: `system` (the
/// Modelfile's `SYSTEM`) first unless the conversation starts with a
/// system message, consecutive messages of one role joined by a blank
/// line, and `.Messages`, `.System` (all system messages), `.Tools` (none)
/// and `.Response` (empty) set. Only templates over `.Messages` are
/// rendered (Ollama's older `.Prompt`/`.Response` form is refused).
pub fn render_ollama(template: &str, messages: &[Message], system: Option<&str>) -> Result<String> {
    if !template.contains(".Messages") {
        return Err(Error::Invalid(
            "the Ollama template does not use .Messages; only such templates are rendered here"
                .into(),
        ));
    }
    let mut conversation = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        if messages.first().is_none_or(|m| m.role != SYSTEM) {
            conversation.push(Message::new(SYSTEM, system));
        }
    }
    conversation.extend_from_slice(messages);
    let (systems, collated) = collate(&conversation);

    let mut context = HashMap::new();
    context.insert("System".to_string(), Value::from(systems));
    context.insert(
        "Messages".to_string(),
        Value::Array(collated.iter().map(message_value).collect()),
    );
    context.insert("Tools".to_string(), Value::Array(Vec::new()));
    context.insert("Response".to_string(), Value::from(String::new()));
    context.insert("Think".to_string(), Value::Bool(false));
    context.insert("IsThinkSet".to_string(), Value::Bool(false));
    context.insert("ThinkLevel".to_string(), Value::from(String::new()));

    let mut engine = gtmpl::Template::default();
    engine.add_funcs(&[("slice", slice as Func)]);
    engine
        .parse(template)
        .map_err(|e| Error::Invalid(format!("the Ollama template does not parse: {e}")))?;
    engine
        .render(&gtmpl::Context::from(Value::Object(context)))
        .map_err(|e| Error::Invalid(format!("the Ollama template failed: {e}")))
}

/// Ollama's `collate`: the system messages' contents joined, and the
/// conversation with consecutive messages of one role (tools aside) merged.
fn collate(messages: &[Message]) -> (String, Vec<Message>) {
    let mut systems = Vec::new();
    let mut collated: Vec<Message> = Vec::new();
    for message in messages {
        if message.role == SYSTEM {
            systems.push(message.content.as_str());
        }
        match collated.last_mut() {
            Some(last) if last.role == message.role && message.role != "tool" => {
                last.content.push_str("\n\n");
                last.content.push_str(&message.content);
            }
            _ => collated.push(message.clone()),
        }
    }
    (systems.join("\n\n"), collated)
}

fn message_value(message: &Message) -> Value {
    let mut fields = HashMap::new();
    fields.insert("Role".to_string(), Value::from(message.role.clone()));
    fields.insert("Content".to_string(), Value::from(message.content.clone()));
    // Fields Ollama's own templates test; a plain chat has none of them.
    fields.insert("Thinking".to_string(), Value::from(String::new()));
    fields.insert("ToolName".to_string(), Value::from(String::new()));
    fields.insert("ToolCalls".to_string(), Value::Array(Vec::new()));
    Value::Object(fields)
}

/// Go's `slice` builtin (gtmpl lacks it) for arrays and strings:
/// `slice x 1 2` is `x[1:2]`.
fn slice(args: &[Value]) -> std::result::Result<Value, FuncError> {
    let (value, bounds) = args
        .split_first()
        .ok_or_else(|| FuncError::AtLeastXArgs("slice".into(), 1))?;
    let mut indices = Vec::new();
    for bound in bounds {
        match bound {
            Value::Number(n) => indices.push(n.as_u64().ok_or_else(|| {
                FuncError::Generic(format!("slice: index {n} is not a non-negative integer"))
            })? as usize),
            other => {
                return Err(FuncError::Generic(format!(
                    "slice: index {other} is not a number"
                )))
            }
        }
    }
    let cut = |len: usize| -> std::result::Result<(usize, usize), FuncError> {
        let start = indices.first().copied().unwrap_or(0);
        let end = indices.get(1).copied().unwrap_or(len);
        if indices.len() > 2 || start > end || end > len {
            return Err(FuncError::Generic(format!(
                "slice: indices {indices:?} out of range for length {len}"
            )));
        }
        Ok((start, end))
    };
    match value {
        Value::Array(items) => {
            let (start, end) = cut(items.len())?;
            Ok(Value::Array(items[start..end].to_vec()))
        }
        Value::String(text) => {
            let (start, end) = cut(text.len())?;
            text.get(start..end)
                .map(|s| Value::from(s.to_string()))
                .ok_or_else(|| FuncError::Generic("slice: not at a character boundary".into()))
        }
        other => Err(FuncError::Generic(format!("slice: cannot slice {other}"))),
    }
}
