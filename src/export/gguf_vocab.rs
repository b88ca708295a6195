//! A Hugging Face `tokenizer.json` as GGUF's `tokenizer.ggml.*`, as
//! llama.cpp's converter writes it for the same model:
//!
//! - byte-level BPE (GPT-2, SmolLM2, Qwen2/3, Llama 3): model `gpt2`, the
//!   tokens and merges. llama.cpp names the pre-tokenizer (`pre`) rather
//!   than storing its regex; as its converter does, the name is found by
//!   tokenizing a probe text both ways: the first of llama.cpp's
//!   pre-tokenizers that splits the probe where the tokenizer's own
//!   pre-tokenizer does and (with this vocabulary) gives the same ids is it;
//! - SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Phi-3,
//!   Gemma folders) and Unigram: model `llama`, the tokens with scores and
//!   token types (byte tokens `<0xXX>`, control, user-defined, unknown,
//!   unused holes), the `▁` prefix as the normalizer / pre-tokenizer says.
//!   llama.cpp's SentencePiece tokenizer merges the adjacent pair whose
//!   merged piece scores highest; a BPE's scores are therefore taken from
//!   its merge ranks (the piece the first merge makes scores highest), which
//!   makes llama.cpp merge in the BPE's order. (llama.cpp's own converter,
//!   given a tokenizer.json without tokenizer.model, scores every piece
//!   -1000 (`LlamaHfVocab`), so its merges go leftmost-first instead.)
//!
//! Either way the result is checked: llama.cpp's tokenizer rebuilt from
//! what will be written ([`llama_cpp::build`]) must give the tokenizer's
//! own ids on the probe and on text around the special tokens, or the
//! export is refused (Unigram: a warning, since llama.cpp's tokenizer for
//! `llama` is greedy where Unigram's is Viterbi).

use std::path::Path;

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

/// The tokenizer as GGUF metadata, and what llama.cpp will do differently.
pub struct Exported {
    pub metadata: Vec<(String, Value)>,
    pub warnings: Vec<String>,
}

/// `tokenizer.ggml.*` for `tokenizer`, padded to the embedding's `rows`
/// (llama.cpp wants one token per row). `folder` is the model's folder:
/// its `tokenizer_config.json` names the padding token and says whether
/// BOS / EOS are added, as llama.cpp's converter reads them.
pub fn from_tokenizer_json(
    tokenizer: &Tokenizer,
    rows: usize,
    folder: Option<&Path>,
) -> Result<Exported> {
    let json: Json = serde_json::from_str(&tokenizer.fingerprint())
        .map_err(|e| invalid(format!("unreadable: {e}")))?;
    let config: Option<Json> = folder
        .map(|f| f.join("tokenizer_config.json"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str(&s).ok());
    let specials = Specials::read(&json, config.as_ref(), tokenizer);
    let model = &json["model"];
    match model["type"].as_str() {
        Some("BPE") if model["byte_fallback"].as_bool() == Some(true) => {
            sentencepiece(&json, config.as_ref(), tokenizer, rows, &specials, false)
        }
        Some("BPE") => byte_level(&json, tokenizer, rows, &specials),
        Some("Unigram") => sentencepiece(&json, config.as_ref(), tokenizer, rows, &specials, true),
        other => Err(invalid(format!(
            "a `{}` model has no GGUF form here (byte-level BPE, SentencePiece-style BPE \
             with byte fallback and Unigram only)",
            other.unwrap_or("unknown")
        ))),
    }
}

/// The special tokens and whether BOS / EOS are added, as llama.cpp's
/// `SpecialVocab` finds them: `tokenizer_config.json`'s `add_bos_token` /
/// `add_eos_token`, else the post-processor's template (a leading BOS, a
/// trailing EOS), else unsaid (the key is left out and llama.cpp's default
/// for the tokenizer applies: BOS for SentencePiece and Llama 3, not for
/// GPT-2 or Qwen).
struct Specials {
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    add_bos: Option<bool>,
    add_eos: Option<bool>,
}

impl Specials {
    fn read(json: &Json, config: Option<&Json>, tokenizer: &Tokenizer) -> Specials {
        let token_text = |key: &str| -> Option<String> {
            let v = config?.get(key)?;
            v.as_str()
                .or_else(|| v.get("content").and_then(Json::as_str))
                .map(str::to_string)
        };
        let bos = tokenizer.bos_token_id();
        let eos = tokenizer.eos_token_id();
        let pad = token_text("pad_token").and_then(|t| tokenizer.token_to_id(&t));
        let (mut add_bos, mut add_eos) = (None, None);
        let post = &json["post_processor"];
        let processors = match post["processors"].as_array() {
            Some(list) => list.iter().collect(),
            None => vec![post],
        };
        for p in processors {
            if p["type"].as_str() != Some("TemplateProcessing") {
                continue;
            }
            let single = p["single"].as_array();
            let special = |item: Option<&Json>| {
                item.and_then(|i| i["SpecialToken"]["id"].as_str())
                    .map(|t| tokenizer.token_to_id(t))
            };
            if let Some(first) = special(single.and_then(|s| s.first())) {
                add_bos = Some(first.is_some() && first == bos);
            }
            if let Some(last) = special(single.and_then(|s| s.last())) {
                add_eos = Some(last.is_some() && last == eos);
            }
        }
        let flag = |key: &str| config.and_then(|c| c.get(key)).and_then(Json::as_bool);
        Specials {
            bos,
            eos,
            pad,
            add_bos: flag("add_bos_token").or(add_bos),
            add_eos: flag("add_eos_token").or(add_eos),
        }
    }
}

/// The keys, in the order llama.cpp's converter writes them.
fn metadata(vocab: GgufVocab) -> Vec<(String, Value)> {
    let key = |k: &str| format!("tokenizer.ggml.{k}");
    let mut meta = vec![(key("model"), Value::String(vocab.model))];
    if let Some(pre) = vocab.pre {
        meta.push((key("pre"), Value::String(pre)));
    }
    meta.push((key("tokens"), Value::Array(Array::Strings(vocab.tokens))));
    if !vocab.scores.is_empty() {
        meta.push((key("scores"), Value::Array(Array::F32(vocab.scores))));
    }
    meta.push((
        key("token_type"),
        Value::Array(Array::I32(vocab.token_types)),
    ));
    if !vocab.merges.is_empty() {
        meta.push((key("merges"), Value::Array(Array::Strings(vocab.merges))));
    }
    for (name, id) in [
        ("bos_token_id", vocab.bos_token_id),
        ("eos_token_id", vocab.eos_token_id),
        ("unknown_token_id", vocab.unknown_token_id),
        ("padding_token_id", vocab.padding_token_id),
    ] {
        if let Some(id) = id {
            meta.push((key(name), Value::U32(id)));
        }
    }
    for (name, flag) in [
        ("add_bos_token", vocab.add_bos_token),
        ("add_eos_token", vocab.add_eos_token),
        ("add_space_prefix", vocab.add_space_prefix),
    ] {
        if let Some(flag) = flag {
            meta.push((key(name), Value::Bool(flag)));
        }
    }
    meta
}

/// The texts that check a vocabulary: the probe, and text around the
/// special tokens (a chat turn), where prefixes and splits go wrong.
fn check_texts(tokenizer: &Tokenizer) -> Vec<String> {
    let mut texts = vec![PROBE.to_string()];
    let specials: Vec<&str> = [
        tokenizer.bos_token.as_deref(),
        tokenizer.eos_token.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    for s in specials {
        texts.push(format!("{s}Hello there\n{s} How are you?{s}\n\n  ok"));
    }
    texts
}

/// A text the two tokenizers encode differently, and both id lists.
struct Difference {
    text: String,
    want: Vec<u32>,
    got: Vec<u32>,
}

/// The first text llama.cpp's tokenizer (rebuilt from `vocab`) encodes
/// otherwise than `tokenizer`, with both id lists; None when all agree.
fn first_difference(vocab: &GgufVocab, tokenizer: &Tokenizer) -> Result<Option<Difference>> {
    let built = llama_cpp::build(vocab, Path::new("tokenizer.json")).map_err(|e| {
        invalid(format!(
            "llama.cpp's tokenizer cannot be rebuilt from it: {e}"
        ))
    })?;
    for text in check_texts(tokenizer) {
        let want = tokenizer.encode(&text)?;
        let got = built
            .inner
            .encode(text.as_str(), false)
            .map_err(|e| invalid(format!("cannot tokenize: {e}")))?
            .get_ids()
            .to_vec();
        if got != want {
            return Ok(Some(Difference { text, want, got }));
        }
    }
    Ok(None)
}

fn describe_difference(Difference { text, want, got }: Difference) -> String {
    let at = want.iter().zip(&got).take_while(|(a, b)| a == b).count();
    let show = |ids: &[u32]| {
        let end = (at + 6).min(ids.len());
        format!("{:?}", &ids[at.min(end)..end])
    };
    format!(
        "on {:?} the tokenizer gives {} ids and llama.cpp would give {}, first differing at \
         token {at} ({} here, {} in llama.cpp)",
        text.chars().take(60).collect::<String>(),
        want.len(),
        got.len(),
        show(&want),
        show(&got)
    )
}

// ---------------------------------------------------------------- byte-level BPE

fn byte_level(
    json: &Json,
    tokenizer: &Tokenizer,
    rows: usize,
    specials: &Specials,
) -> Result<Exported> {
    let model = &json["model"];
    let mut vocab = read_vocab(json, model, tokenizer, rows)?;
    vocab.bos_token_id = specials.bos;
    vocab.eos_token_id = specials.eos;
    vocab.padding_token_id = specials.pad;
    vocab.add_bos_token = specials.add_bos;
    vocab.add_eos_token = specials.add_eos;
    let reference = tokenizer.encode(PROBE)?;
    let own_pieces = hf_pieces(json, PROBE);
    let mut names: Vec<&str> = PREFERRED.to_vec();
    for name in llama_cpp::supported_pre_tokenizers() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let source = Path::new("tokenizer.json");
    let pre = names.into_iter().find(|name| {
        // Where the pre-tokenizer is readable, it must split as llama.cpp's
        // does (ids alone cannot tell Llama 3's digit groups from Qwen's
        // single digits when the vocabulary has no multi-digit tokens).
        // The splits need no vocabulary: a one-merge stand-in builds fast.
        if let Some(own) = &own_pieces {
            let stand_in = GgufVocab {
                model: "gpt2".into(),
                pre: Some(name.to_string()),
                tokens: vec!["a".into(), "b".into(), "ab".into()],
                merges: vec!["a b".into()],
                ..Default::default()
            };
            let theirs = llama_cpp::build(&stand_in, source)
                .ok()
                .and_then(|b| pieces_of(&b.inner, PROBE));
            if theirs.is_some_and(|t| t != *own) {
                return false;
            }
        }
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
    vocab.pre = Some(pre.to_string());
    if let Some(diff) = first_difference(&vocab, tokenizer)? {
        return Err(invalid(format!(
            "llama.cpp would tokenize it differently: {}",
            describe_difference(diff)
        )));
    }
    Ok(Exported {
        metadata: metadata(vocab),
        warnings: Vec::new(),
    })
}

/// The byte spans the tokenizer's own pre-tokenizer cuts `text` into
/// (None when it has none or it cannot be rebuilt).
fn hf_pieces(json: &Json, text: &str) -> Option<Vec<(usize, usize)>> {
    let t: tokenizers::Tokenizer = json.to_string().parse().ok()?;
    pieces_of(&t, text)
}

fn pieces_of(t: &tokenizers::Tokenizer, text: &str) -> Option<Vec<(usize, usize)>> {
    use tokenizers::tokenizer::{OffsetReferential, OffsetType, PreTokenizedString};
    use tokenizers::PreTokenizer;
    let pre = t.get_pre_tokenizer()?;
    let mut s = PreTokenizedString::from(text);
    pre.pre_tokenize(&mut s).ok()?;
    Some(
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(_, span, _)| span)
            .collect(),
    )
}

// ---------------------------------------------------------------- SentencePiece

/// Byte tokens of a byte-fallback vocabulary: `<0xXX>`.
fn is_byte_token(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 6
        && text.starts_with("<0x")
        && text.ends_with('>')
        && b[3].is_ascii_hexdigit()
        && b[4].is_ascii_hexdigit()
}

/// Added tokens llama.cpp's converter makes control tokens although the
/// tokenizer does not call them special (Gemma's `<mask>`, `<unusedN>`,
/// `<|…|>` markers).
fn looks_special(text: &str) -> bool {
    matches!(text, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (text.starts_with("<|") && text.ends_with("|>"))
        || (text.starts_with("<｜") && text.ends_with("｜>"))
        || (text.starts_with("<unused") && text.ends_with('>'))
}

/// Whether text gets a `▁` prefix: a `Prepend("▁")` normalizer, or a
/// `Metaspace` pre-tokenizer that prepends (`tokenizer_config.json`'s
/// `add_prefix_space` wins, as in llama.cpp's converter).
fn space_prefix(json: &Json, config: Option<&Json>) -> bool {
    if let Some(flag) = config
        .and_then(|c| c.get("add_prefix_space"))
        .and_then(Json::as_bool)
    {
        return flag;
    }
    fn walk<'a>(j: &'a Json, list: &str, out: &mut Vec<&'a Json>) {
        match j[list].as_array() {
            Some(items) => items.iter().for_each(|i| walk(i, list, out)),
            None if !j.is_null() => out.push(j),
            None => {}
        }
    }
    let mut steps = Vec::new();
    walk(&json["normalizer"], "normalizers", &mut steps);
    walk(&json["pre_tokenizer"], "pretokenizers", &mut steps);
    steps.iter().any(|s| match s["type"].as_str() {
        Some("Prepend") => s["prepend"].as_str() == Some("▁"),
        Some("Metaspace") => match s["prepend_scheme"].as_str() {
            Some(scheme) => scheme != "never",
            None => s["add_prefix_space"].as_bool().unwrap_or(true),
        },
        _ => false,
    })
}

fn sentencepiece(
    json: &Json,
    config: Option<&Json>,
    tokenizer: &Tokenizer,
    rows: usize,
    specials: &Specials,
    unigram: bool,
) -> Result<Exported> {
    let model = &json["model"];
    let n = tokenizer.vocab_size().max(rows);
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut scores = vec![-1000.0f32; n];
    let mut types = vec![token_type::UNUSED; n];
    let unk;
    if unigram {
        let entries = model["vocab"]
            .as_array()
            .ok_or_else(|| invalid("`model.vocab` of a Unigram model is not a list"))?;
        for (id, entry) in entries.iter().enumerate() {
            let (Some(text), Some(score)) = (entry[0].as_str(), entry[1].as_f64()) else {
                return Err(invalid(format!("Unigram entry {id} is not [piece, score]")));
            };
            let slot = tokens
                .get_mut(id)
                .ok_or_else(|| invalid(format!("piece {id} is past the {n} tokens")))?;
            *slot = Some(text.to_string());
            scores[id] = score as f32;
            types[id] = if is_byte_token(text) {
                token_type::BYTE
            } else {
                token_type::NORMAL
            };
        }
        unk = model["unk_id"].as_u64().map(|id| id as u32);
    } else {
        let entries = model["vocab"]
            .as_object()
            .ok_or_else(|| invalid("`model.vocab` is not a map"))?;
        let ids: std::collections::HashMap<&str, usize> = entries
            .iter()
            .filter_map(|(t, id)| Some((t.as_str(), id.as_u64()? as usize)))
            .collect();
        for (&text, &id) in &ids {
            let slot = tokens.get_mut(id).ok_or_else(|| {
                invalid(format!("token `{text}` has id {id}, past the {n} tokens"))
            })?;
            *slot = Some(text.to_string());
            types[id] = if is_byte_token(text) {
                token_type::BYTE
            } else {
                token_type::NORMAL
            };
        }
        // The piece a merge of rank r makes scores -(r + 1): the first merge
        // that makes it counts. Pieces no merge makes score below them all.
        let merges = model["merges"]
            .as_array()
            .ok_or_else(|| invalid("`model.merges` is not a list"))?;
        let floor = -(merges.len() as f32) - 1.0;
        let mut scored = vec![false; n];
        for (rank, m) in merges.iter().enumerate() {
            let (a, b) = merge_pair(m)?;
            if let Some(&id) = ids.get(format!("{a}{b}").as_str()) {
                if !scored[id] {
                    scored[id] = true;
                    scores[id] = -(rank as f32) - 1.0;
                }
            }
        }
        for (id, done) in scored.iter().enumerate() {
            if !done && tokens[id].is_some() {
                scores[id] = if types[id] == token_type::BYTE {
                    0.0
                } else {
                    floor
                };
            }
        }
        unk = model["unk_token"]
            .as_str()
            .and_then(|t| ids.get(t))
            .map(|&id| id as u32);
    }
    if let Some(id) = unk {
        if let Some(t) = types.get_mut(id as usize) {
            *t = token_type::UNKNOWN;
        }
    }
    // Added tokens: control when special (or looking special), else
    // user-defined with `▁` written as spaces; scored -1000.
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(text), Some(id)) = (added["content"].as_str(), added["id"].as_u64()) else {
            return Err(invalid("an added token without `content` and `id`"));
        };
        let id = id as usize;
        if id >= n {
            return Err(invalid(format!(
                "added token `{text}` has id {id}, past the {n} tokens"
            )));
        }
        let special = added["special"].as_bool() == Some(true) || looks_special(text);
        if special {
            types[id] = token_type::CONTROL;
            tokens[id] = Some(text.to_string());
        } else {
            types[id] = token_type::USER_DEFINED;
            tokens[id] = Some(text.replace('▁', " "));
        }
        scores[id] = -1000.0;
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();
    let vocab = GgufVocab {
        model: "llama".into(),
        pre: Some("default".into()),
        tokens,
        scores,
        token_types: types,
        bos_token_id: specials.bos,
        eos_token_id: specials.eos,
        unknown_token_id: unk,
        padding_token_id: specials.pad,
        add_bos_token: specials.add_bos,
        add_eos_token: specials.add_eos,
        add_space_prefix: Some(space_prefix(json, config)),
        ..Default::default()
    };
    let mut warnings = Vec::new();
    if let Some(diff) = first_difference(&vocab, tokenizer)? {
        let what = describe_difference(diff);
        if unigram {
            warnings.push(format!(
                "llama.cpp tokenizes this Unigram vocabulary by merging the highest-scoring \
                 pieces, not by its best segmentation, so some texts get other tokens: {what}"
            ));
        } else {
            return Err(invalid(format!(
                "llama.cpp would tokenize it differently: {what}"
            )));
        }
    }
    Ok(Exported {
        metadata: metadata(vocab),
        warnings,
    })
}

/// A merge as its two tokens (`"a b"` or `["a", "b"]`).
fn merge_pair(m: &Json) -> Result<(String, String)> {
    match m {
        Json::String(s) => crate::tokenizer::gguf::split_merge(s)
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .ok_or_else(|| invalid(format!("merge `{s}` is not two tokens"))),
        Json::Array(pair) => match (pair.first(), pair.get(1)) {
            (Some(Json::String(a)), Some(Json::String(b))) if pair.len() == 2 => {
                Ok((a.clone(), b.clone()))
            }
            _ => Err(invalid("a merge is not a pair of strings")),
        },
        _ => Err(invalid("a merge is not a pair of strings")),
    }
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
