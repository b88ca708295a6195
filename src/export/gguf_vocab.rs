//! A Hugging Face `tokenizer.json` (byte-level BPE) as GGUF's
//! `tokenizer.ggml.*`. llama.cpp names the pre-tokenizer (`pre`) rather
//! than storing its regex; as its converter does, the name is found by
//! tokenizing a probe text both ways: the first of llama.cpp's
//! pre-tokenizers (with this vocabulary) that gives the same ids is it.

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::gguf::{Array, Value};
use crate::tokenizer::gguf::{token_type, GgufVocab};
use crate::tokenizer::{llama_cpp, Tokenizer};

/// Letters, digits in runs, contractions, whitespace runs, code, CJK,
/// accents and emoji: the cases where pre-tokenizers disagree.
const PROBE: &str = "Hello World! It's 2026-12-01; we'll pay $1,234.56 (12345678) \
    for 3 items.\n\n  Indented  line\twith tabs\r\n\
    fn main() { println!(\"{x:?}\"); } // café naïve Ωmega\n\
    日本語のテキスト 한국어 текст 🤗🚀  ...!!!   end";

/// The names tried first (the common ones), before every other one.
const PREFERRED: &[&str] = &[
    "gpt-2",
    "llama-bpe",
    "qwen2",
    "smollm",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "falcon",
    "tekken",
    "gpt-4o",
    "qwen35",
    "default",
];

fn invalid(what: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("GGUF export: tokenizer.json: {what}"))
}

/// `tokenizer.ggml.*` for `tokenizer`, padded to the embedding's `rows`
/// (llama.cpp wants one token per row).
pub fn from_tokenizer_json(tokenizer: &Tokenizer, rows: usize) -> Result<Vec<(String, Value)>> {
    let json: Json = serde_json::from_str(&tokenizer.fingerprint())
        .map_err(|e| invalid(format!("unreadable: {e}")))?;
    let model = &json["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(invalid(format!(
            "a `{}` model has no GGUF form here (byte-level BPE only)",
            model["type"].as_str().unwrap_or("unknown")
        )));
    }
    if model["byte_fallback"].as_bool() == Some(true) {
        return Err(invalid(
            "a SentencePiece-style BPE (byte fallback: Llama 2, Mistral, Gemma folders) is not \
             written to GGUF yet; export a model loaded from its GGUF file instead",
        ));
    }
    let mut vocab = read_vocab(&json, model, tokenizer, rows)?;
    let reference = tokenizer.encode(PROBE)?;
    let mut names: Vec<&str> = PREFERRED.to_vec();
    for name in llama_cpp::supported_pre_tokenizers() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let source = std::path::Path::new("tokenizer.json");
    let pre = names.into_iter().find(|name| {
        vocab.pre = Some(name.to_string());
        llama_cpp::build(&vocab, source)
            .ok()
            .and_then(|built| built.inner.encode(PROBE, false).ok())
            .is_some_and(|e| e.get_ids() == reference.as_slice())
    });
    let Some(pre) = pre else {
        return Err(invalid(
            "its pre-tokenizer splits text unlike any llama.cpp names, so llama.cpp would \
             tokenize differently (no `tokenizer.ggml.pre` fits)",
        ));
    };
    let mut meta = vec![
        (
            "tokenizer.ggml.model".to_string(),
            Value::String("gpt2".into()),
        ),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(Array::Strings(vocab.tokens)),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(Array::I32(vocab.token_types)),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(Array::Strings(vocab.merges)),
        ),
    ];
    if let Some(id) = tokenizer.bos_token_id() {
        meta.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(id)));
    }
    if let Some(id) = tokenizer.eos_token_id() {
        meta.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(id)));
    }
    meta.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(tokenizer.add_bos_token),
    ));
    meta.push((
        "tokenizer.ggml.add_eos_token".into(),
        Value::Bool(tokenizer.add_eos_token),
    ));
    Ok(meta)
}

/// Tokens by id (holes named `[PAD<id>]` and typed unused, as llama.cpp's
/// converter does),
/// their types, and the merges as `"left right"`.
fn read_vocab(json: &Json, model: &Json, tokenizer: &Tokenizer, rows: usize) -> Result<GgufVocab> {
    let n = tokenizer.vocab_size().max(rows);
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![token_type::UNUSED; n];
    let entries = model["vocab"]
        .as_object()
        .ok_or_else(|| invalid("`model.vocab` is not a map"))?;
    let mut place = |text: &str, id: u64, kind: i32| -> Result<()> {
        let slot = tokens
            .get_mut(id as usize)
            .ok_or_else(|| invalid(format!("token `{text}` has id {id}, past the {n} tokens")))?;
        *slot = Some(text.to_string());
        types[id as usize] = kind;
        Ok(())
    };
    for (text, id) in entries {
        let id = id
            .as_u64()
            .ok_or_else(|| invalid(format!("token `{text}` has no integer id")))?;
        place(text, id, token_type::NORMAL)?;
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(text), Some(id)) = (added["content"].as_str(), added["id"].as_u64()) else {
            return Err(invalid("an added token without `content` and `id`"));
        };
        let kind = if added["special"].as_bool() == Some(true) {
            token_type::CONTROL
        } else {
            token_type::USER_DEFINED
        };
        place(text, id, kind)?;
    }
    let tokens = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| invalid("`model.merges` is not a list"))?
        .iter()
        .map(|m| match m {
            Json::String(s) => Ok(s.clone()),
            Json::Array(pair) => match (pair.first(), pair.get(1)) {
                (Some(Json::String(a)), Some(Json::String(b))) if pair.len() == 2 => {
                    Ok(format!("{a} {b}"))
                }
                _ => Err(invalid("a merge is not a pair of strings")),
            },
            _ => Err(invalid("a merge is not a pair of strings")),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(GgufVocab {
        model: "gpt2".into(),
        tokens,
        token_types: types,
        merges,
        bos_token_id: tokenizer.bos_token_id(),
        eos_token_id: tokenizer.eos_token_id(),
        add_bos_token: Some(tokenizer.add_bos_token),
        add_eos_token: Some(tokenizer.add_eos_token),
        ..Default::default()
    })
}
