//! llama.cpp's tokenizers rebuilt as Hugging Face `tokenizers` pipelines, so
//! that a GGUF vocabulary encodes to the ids llama.cpp gives:
//!
//! - SentencePiece (`llama`): BPE over the pieces, merges ranked by the
//!   merged piece's score (as Hugging Face's converter does), byte fallback
//!   to `<0xXX>`, spaces as `▁`, an optional `▁` prefix;
//! - byte-level BPE (`gpt2`): the GGUF's merges after llama.cpp's
//!   pre-tokenizer regexes for `tokenizer.ggml.pre`;
//! - `gemma4`: BPE on raw UTF-8 with `▁` for spaces, split at newlines.
//!
//! Control and unknown tokens are special added tokens (matched whole when
//! special tokens are parsed); user-defined tokens are plain added tokens,
//! always matched whole, as in llama.cpp.

use std::path::Path;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{
    NormalizerWrapper, Prepend, Replace, Sequence as NormalizerSequence,
};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::gguf::{split_merge, token_type, GgufVocab};
use crate::error::{Error, Result};

/// Tokenizer models (`tokenizer.ggml.model`) FineTune rebuilds.
pub const SUPPORTED_MODELS: &[&str] = &["llama", "gpt2", "gemma4"];

/// A tokenizer rebuilt from a GGUF vocabulary, with llama.cpp's defaults
/// applied.
pub struct Built {
    pub inner: tokenizers::Tokenizer,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
}

pub fn build(vocab: &GgufVocab, source: &Path) -> Result<Built> {
    match vocab.model.as_str() {
        "llama" => build_spm(vocab, source),
        "gpt2" => build_bpe(vocab, source),
        "gemma4" => build_gemma4(vocab, source),
        other => Err(Error::Invalid(format!(
            "{}: GGUF tokenizer model `{other}` (tokenizer.ggml.model) is not supported; \
             supported: {} (SentencePiece, byte-level BPE, Gemma 4 BPE)",
            source.display(),
            SUPPORTED_MODELS.join(", ")
        ))),
    }
}

fn invalid(source: &Path, what: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {what}", source.display()))
}

/// Token texts as llama.cpp keys them: an empty token becomes `[EMPTY_<id>]`.
fn token_texts(vocab: &GgufVocab) -> Vec<String> {
    vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                t.clone()
            }
        })
        .collect()
}

/// Text → id; a text that occurs twice keeps its last id, as in llama.cpp.
fn vocab_map(texts: &[String]) -> tokenizers::models::bpe::Vocab {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// End-of-turn markers llama.cpp treats as control tokens even when a file
/// types them normal (chat templates write them).
const END_OF_TURN: &[&str] = &[
    "<|eot_id|>",
    "<|eom_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
];

/// Control and unknown tokens as special added tokens, user-defined ones as
/// plain added tokens; none normalized (llama.cpp matches them in the raw
/// text). For Phi-3 llama.cpp strips the whitespace after them.
fn added_tokens(vocab: &GgufVocab, texts: &[String]) -> (Vec<AddedToken>, Vec<AddedToken>) {
    let name = vocab.model_name.as_deref().unwrap_or("").to_lowercase();
    let phi3 = name.contains("phi-3") || name.contains("phi3");
    let mut special = Vec::new();
    let mut plain = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let mut kind = vocab.token_type(i);
        if kind == token_type::NORMAL && END_OF_TURN.contains(&text.as_str()) {
            kind = token_type::CONTROL;
        }
        let is_special = matches!(kind, token_type::CONTROL | token_type::UNKNOWN);
        if !is_special && kind != token_type::USER_DEFINED {
            continue;
        }
        let rstrip = phi3 && !matches!(text.as_str(), "<unk>" | "<s>" | "<|endoftext|>");
        let token = AddedToken::from(text.clone(), is_special)
            .normalized(false)
            .rstrip(rstrip);
        if is_special {
            special.push(token);
        } else {
            plain.push(token);
        }
    }
    (special, plain)
}

fn add_tokens(inner: &mut tokenizers::Tokenizer, vocab: &GgufVocab, texts: &[String]) {
    let (special, plain) = added_tokens(vocab, texts);
    inner.add_special_tokens(&special);
    inner.add_tokens(&plain);
}

fn bpe_model(
    source: &Path,
    vocab: tokenizers::models::bpe::Vocab,
    merges: Vec<(String, String)>,
    configure: impl FnOnce(tokenizers::models::bpe::BpeBuilder) -> tokenizers::models::bpe::BpeBuilder,
) -> Result<BPE> {
    configure(BPE::builder().vocab_and_merges(vocab, merges))
        .build()
        .map_err(|e| invalid(source, format!("bad BPE vocabulary: {e}")))
}

/// The GGUF's merges, in order, as pairs of tokens of the vocabulary. A
/// pair listed twice keeps its first rank (llama.cpp's map keeps the first);
/// a merge of tokens the vocabulary lacks could never apply and is left out.
fn gguf_merges(
    vocab: &GgufVocab,
    texts: &[String],
    source: &Path,
) -> Result<Vec<(String, String)>> {
    if vocab.merges.is_empty() {
        return Err(invalid(
            source,
            format!(
                "`tokenizer.ggml.merges` is missing or empty, which a `{}` tokenizer needs",
                vocab.model
            ),
        ));
    }
    let known: std::collections::HashSet<&str> = texts.iter().map(String::as_str).collect();
    let mut seen = std::collections::HashSet::with_capacity(vocab.merges.len());
    let mut merges = Vec::with_capacity(vocab.merges.len());
    for m in &vocab.merges {
        let (a, b) = split_merge(m).ok_or_else(|| {
            invalid(
                source,
                format!("`tokenizer.ggml.merges`: malformed merge `{m}`"),
            )
        })?;
        if !known.contains(a) || !known.contains(b) || !known.contains(format!("{a}{b}").as_str()) {
            continue;
        }
        if seen.insert((a, b)) {
            merges.push((a.to_string(), b.to_string()));
        }
    }
    Ok(merges)
}

// ---------------------------------------------------------------- SentencePiece

/// BPE merges for a SentencePiece vocabulary, as Hugging Face's converter
/// makes them: every split of a piece into two pieces, ranked by the merged
/// piece's score (highest first; ties by merged id, then left id). Each piece
/// is cut at each character boundary and both halves looked up in `ids`
/// (text → id), so this is linear in the vocabulary's total length.
pub fn spm_merges(
    texts: &[String],
    scores: &[f32],
    ids: &tokenizers::models::bpe::Vocab,
) -> Vec<(String, String)> {
    // One sortable key per merge: score order, merged id, left id, right id.
    let mut found: Vec<u128> = Vec::new();
    for (merged, piece) in texts.iter().enumerate() {
        // Only the id a text keys to can be produced by merging.
        if ids.get(piece) != Some(&(merged as u32)) {
            continue;
        }
        let score = scores.get(merged).copied().unwrap_or(0.0);
        // The bits of -score, flipped so that they order as the floats do.
        let bits = (-score).to_bits();
        let order = if bits >> 31 == 1 {
            !bits
        } else {
            bits | (1 << 31)
        };
        let high = ((order as u128) << 96) | ((merged as u128) << 64);
        for (cut, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(cut);
            let Some(&l) = ids.get(l) else { continue };
            if let Some(&r) = ids.get(r) {
                found.push(high | ((l as u128) << 32) | r as u128);
            }
        }
    }
    found.sort_unstable();
    found
        .into_iter()
        .map(|key| {
            let text = |shift: u32| texts[(key >> shift) as u32 as usize].clone();
            (text(32), text(0))
        })
        .collect()
}

fn build_spm(vocab: &GgufVocab, source: &Path) -> Result<Built> {
    let texts = token_texts(vocab);
    let n = texts.len() as u32;
    let in_range = |id: u32| (id < n).then_some(id);
    // llama.cpp's defaults for SentencePiece vocabularies.
    let bos = vocab.bos_token_id.or_else(|| in_range(1));
    let eos = vocab.eos_token_id.or_else(|| in_range(2));
    let unk = vocab.unknown_token_id.or_else(|| in_range(0));
    let add_space_prefix = vocab.add_space_prefix.unwrap_or(true);

    let ids = vocab_map(&texts);
    let merges = spm_merges(&texts, &vocab.scores, &ids);
    let unk_text = unk.map(|id| texts[id as usize].clone());
    let bpe = bpe_model(source, ids, merges, |b| {
        let b = b.byte_fallback(true).fuse_unk(true);
        match unk_text {
            Some(u) => b.unk_token(u),
            None => b,
        }
    })?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let space = Replace::new(" ", "▁").map_err(|e| invalid(source, e))?;
    let normalizer: NormalizerWrapper = if add_space_prefix {
        NormalizerSequence::new(vec![Prepend::new("▁".into()).into(), space.into()]).into()
    } else {
        space.into()
    };
    inner.with_normalizer(Some(normalizer));
    inner.with_decoder(Some(spm_decoder(source, add_space_prefix)?));
    add_tokens(&mut inner, vocab, &texts);
    Ok(Built {
        inner,
        bos_token_id: bos,
        eos_token_id: eos,
        add_bos: vocab.add_bos_token.unwrap_or(true),
        add_eos: vocab.add_eos_token.unwrap_or(false),
    })
}

/// `▁` → space, `<0xXX>` → bytes, and the prefix space dropped.
fn spm_decoder(source: &Path, strip_prefix: bool) -> Result<DecoderWrapper> {
    let mut steps: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ")
            .map_err(|e| invalid(source, e))?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if strip_prefix {
        steps.push(Strip::new(' ', 1, 0).into());
    }
    Ok(DecoderSequence::new(steps).into())
}

// ---------------------------------------------------------------- byte-level BPE

/// GPT-2's split (llama.cpp's form, without the final `\s+`, which changes
/// nothing once the gaps between matches are kept as pieces).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's split (case-insensitive contractions spelt out).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2's split: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 3.5's split: Qwen 2's with combining marks kept on their letters.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Tekken (Mistral Nemo) and GPT-4o: llama.cpp's forms, where the case
/// classes are "a letter but not a-z" / "a letter but not A-Z".
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// DeepSeek LLM's letter class, from its tokenizer.json (escaped: several of
/// its code points have canonical equivalents an editor could substitute).
const DEEPSEEK_LETTERS: &str = r"\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+";
const CJK_HANGUL: &str = r"[\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+";
const DEEPSEEK3_WORDS: &str = r"[!-/:-@\[-`{-~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const PORO: &str = r" ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+";

/// One of llama.cpp's BPE pre-tokenizers: the regexes applied in turn (each
/// splits every piece further, matches and gaps both kept) and the options
/// llama.cpp sets with it.
struct PreTokenizer {
    names: &'static [&'static str],
    regexes: &'static [&'static str],
    /// A piece that is itself a token is not merged further.
    ignore_merges: bool,
    /// llama.cpp's `add_bos` default (the file's `add_bos_token` wins).
    add_bos: bool,
    /// llama.cpp ignores the BOS id (ChatGLM).
    no_bos: bool,
}

const fn pre(names: &'static [&'static str], regexes: &'static [&'static str]) -> PreTokenizer {
    PreTokenizer {
        names,
        regexes,
        ignore_merges: false,
        add_bos: false,
        no_bos: false,
    }
}

const PRE_TOKENIZERS: &[PreTokenizer] = &[
    pre(
        &["default"],
        &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
    ),
    PreTokenizer {
        ignore_merges: true,
        add_bos: true,
        ..pre(
            &[
                "llama-bpe",
                "llama3",
                "llama-v3",
                "falcon3",
                "falcon-h1",
                "pixtral",
                "midm-2.0",
                "lfm2",
            ],
            &[LLAMA3],
        )
    },
    pre(&["dbrx", "smaug-bpe"], &[LLAMA3]),
    PreTokenizer {
        no_bos: true,
        ..pre(&["chatglm-bpe"], &[LLAMA3])
    },
    PreTokenizer {
        no_bos: true,
        ignore_merges: true,
        ..pre(&["glm4"], &[LLAMA3])
    },
    pre(
        &["deepseek-llm"],
        &[
            "[\r\n]",
            DEEPSEEK_LETTERS,
            r"\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+",
            r"\s+$",
            CJK_HANGUL,
            r"\p{N}+",
        ],
    ),
    pre(
        &["deepseek-coder"],
        &["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK_HANGUL, r"\p{N}"],
    ),
    pre(
        &["deepseek-v3", "hunyuan-dense"],
        &[
            r"\p{N}{1,3}",
            r"[\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+",
            DEEPSEEK3_WORDS,
        ],
    ),
    pre(
        &["falcon"],
        &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"],
    ),
    pre(
        &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
            "mellum2",
        ],
        &[r"\p{N}", GPT2],
    ),
    pre(
        &[
            "gpt-2",
            "phi-2",
            "mpt",
            "olmo",
            "jais",
            "trillion",
            "granite-docling",
            "exaone4",
            "a.x-4.0",
            "mellum",
            "gigachat",
        ],
        &[GPT2],
    ),
    pre(
        &[
            "qwen2",
            "deepseek-r1-qwen",
            "stablelm2",
            "megrez",
            "hunyuan",
            "grok-2",
        ],
        &[QWEN2],
    ),
    pre(&["qwen35"], &[QWEN35]),
    pre(&["poro-chat", "bloom", "gpt3-finnish"], &[PORO]),
    pre(&["viking"], &[PORO, r"\p{N}"]),
    PreTokenizer {
        ignore_merges: true,
        add_bos: true,
        ..pre(&["tekken"], &[TEKKEN])
    },
    pre(&["gpt-4o", "llama4"], &[GPT4O]),
];

/// Every `tokenizer.ggml.pre` FineTune accepts for `gpt2` vocabularies.
pub fn supported_pre_tokenizers() -> Vec<&'static str> {
    PRE_TOKENIZERS
        .iter()
        .flat_map(|p| p.names.iter().copied())
        .collect()
}

fn pre_tokenizer(name: Option<&str>, source: &Path) -> Result<&'static PreTokenizer> {
    // llama.cpp uses `default` when the key is absent.
    let name = name.unwrap_or("default");
    PRE_TOKENIZERS
        .iter()
        .find(|p| p.names.contains(&name))
        .ok_or_else(|| {
            invalid(
                source,
                format!(
                    "GGUF pre-tokenizer `{name}` (tokenizer.ggml.pre) is not supported; supported: {}",
                    supported_pre_tokenizers().join(", ")
                ),
            )
        })
}

fn splits(regexes: &[&str], source: &Path) -> Result<Vec<PreTokenizerWrapper>> {
    regexes
        .iter()
        .map(|r| {
            Split::new(
                SplitPattern::Regex((*r).to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map(Into::into)
            .map_err(|e| invalid(source, format!("pre-tokenizer regex `{r}`: {e}")))
        })
        .collect()
}

fn build_bpe(vocab: &GgufVocab, source: &Path) -> Result<Built> {
    let pre = pre_tokenizer(vocab.pre.as_deref(), source)?;
    let texts = token_texts(vocab);
    let merges = gguf_merges(vocab, &texts, source)?;
    let bpe = bpe_model(source, vocab_map(&texts), merges, |b| {
        b.ignore_merges(pre.ignore_merges)
    })?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let mut steps = splits(pre.regexes, source)?;
    steps.push(ByteLevel::new(false, true, false).into());
    inner.with_pre_tokenizer(Some(Sequence::new(steps)));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    add_tokens(&mut inner, vocab, &texts);
    Ok(Built {
        inner,
        bos_token_id: if pre.no_bos { None } else { vocab.bos_token_id },
        eos_token_id: vocab.eos_token_id,
        add_bos: vocab.add_bos_token.unwrap_or(pre.add_bos),
        add_eos: vocab.add_eos_token.unwrap_or(false),
    })
}

// ---------------------------------------------------------------- Gemma 4

fn build_gemma4(vocab: &GgufVocab, source: &Path) -> Result<Built> {
    let texts = token_texts(vocab);
    let merges = gguf_merges(vocab, &texts, source)?;
    let bpe = bpe_model(source, vocab_map(&texts), merges, |b| b.byte_fallback(true))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_normalizer(Some(
        Replace::new(" ", "▁").map_err(|e| invalid(source, e))?,
    ));
    inner.with_pre_tokenizer(Some(Sequence::new(splits(&[r"[^\n]+|[\n]+"], source)?)));
    inner.with_decoder(Some(spm_decoder(source, false)?));
    add_tokens(&mut inner, vocab, &texts);
    // llama.cpp takes a run of newlines whole when it is a token.
    let newlines: Vec<AddedToken> = texts
        .iter()
        .filter(|t| t.bytes().all(|b| b == b'\n'))
        .map(|t| AddedToken::from(t.clone(), false).normalized(false))
        .collect();
    inner.add_tokens(&newlines);
    Ok(Built {
        inner,
        bos_token_id: vocab.bos_token_id,
        eos_token_id: vocab.eos_token_id,
        // llama.cpp always adds BOS for Gemma 4.
        add_bos: true,
        add_eos: vocab.add_eos_token.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::super::Tokenizer;
    use super::*;

    /// A tiny SentencePiece vocabulary: `<unk>`, two control tokens, the
    /// 256 byte tokens, then pieces whose scores make `▁ab` beat `▁a` + `b`.
    fn tiny_spm() -> GgufVocab {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![
            token_type::UNKNOWN,
            token_type::CONTROL,
            token_type::CONTROL,
        ];
        let mut scores = vec![0.0, 0.0, 0.0];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(token_type::BYTE);
            scores.push(0.0);
        }
        for (piece, score) in [
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -3.0),
            ("c", -4.0),
            ("ab", -5.0),
            ("▁ab", -6.0),
            ("▁a", -7.0),
            ("▁c", -8.0),
            ("<|u|>", -9.0),
        ] {
            tokens.push(piece.into());
            types.push(if piece == "<|u|>" {
                token_type::USER_DEFINED
            } else {
                token_type::NORMAL
            });
            scores.push(score);
        }
        GgufVocab {
            model: "llama".into(),
            pre: Some("default".into()),
            tokens,
            scores,
            token_types: types,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            unknown_token_id: Some(0),
            ..GgufVocab::default()
        }
    }

    fn id(t: &Tokenizer, piece: &str) -> u32 {
        t.token_to_id(piece).unwrap()
    }

    #[test]
    fn sentencepiece_merges_by_score_with_prefix_and_byte_fallback() {
        let t = Tokenizer::from_gguf(&tiny_spm(), Path::new("tiny.gguf")).unwrap();
        let ids = |pieces: &[&str]| pieces.iter().map(|p| id(&t, p)).collect::<Vec<_>>();
        // `▁` prefix; `a`+`b` (score -5) merges before `▁`+`a` (-7).
        assert_eq!(t.encode("ab c").unwrap(), ids(&["▁ab", "▁c"]));
        // é is not a piece: its UTF-8 bytes; a newline likewise.
        assert_eq!(
            t.encode("ab é\n").unwrap(),
            ids(&["▁ab", "▁", "<0xC3>", "<0xA9>", "<0x0A>"])
        );
        // Control tokens are matched whole, and the text after one gets the
        // prefix again; user-defined tokens too, even unparsed.
        assert_eq!(t.encode("<s>ab</s>").unwrap(), ids(&["<s>", "▁ab", "</s>"]));
        assert_eq!(t.encode("c<|u|>c").unwrap(), ids(&["▁c", "<|u|>", "▁c"]));
        let mut plain = Tokenizer::from_gguf(&tiny_spm(), Path::new("tiny.gguf")).unwrap();
        plain.set_parse_special(false);
        assert_eq!(
            plain.encode("<s>").unwrap(),
            ids(&["▁", "<0x3C>", "<0x73>", "<0x3E>"])
        );
        assert_eq!(plain.encode("c<|u|>").unwrap(), ids(&["▁c", "<|u|>"]));
        // Decoding: bytes reassembled, ▁ → space, the prefix space dropped,
        // control tokens left out (or written out on request).
        let ids_ = t.encode("<s>ab é\nc").unwrap();
        assert_eq!(t.decode(&ids_).unwrap(), "ab é\nc");
        // (as Hugging Face's Llama decoder: the prefix space after a written
        // out special token stays)
        assert_eq!(t.decode_with_special(&ids_).unwrap(), "<s> ab é\nc");
        // llama.cpp's defaults for SentencePiece: BOS added, EOS not.
        assert!(t.add_bos_token && !t.add_eos_token);
        assert_eq!(t.bos_token.as_deref(), Some("<s>"));
        assert_eq!(t.bos_token_id(), Some(1));
        assert_eq!(t.stop_ids, vec![2]);
    }

    #[test]
    fn sentencepiece_without_space_prefix() {
        let vocab = GgufVocab {
            add_space_prefix: Some(false),
            add_bos_token: Some(false),
            ..tiny_spm()
        };
        let t = Tokenizer::from_gguf(&vocab, Path::new("tiny.gguf")).unwrap();
        let ids = |pieces: &[&str]| pieces.iter().map(|p| id(&t, p)).collect::<Vec<_>>();
        assert_eq!(t.encode("ab c").unwrap(), ids(&["ab", "▁c"]));
        assert_eq!(t.decode(&t.encode(" ab c").unwrap()).unwrap(), " ab c");
        assert!(!t.add_bos_token);
    }

    #[test]
    fn sentencepiece_merges_split_every_piece_into_two_pieces() {
        let texts: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"]
            .map(String::from)
            .to_vec();
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let merges = spm_merges(&texts, &scores, &vocab_map(&texts));
        let pairs: Vec<(&str, &str)> = merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(pairs, [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]);
    }

    /// GPT-2's byte → character map.
    fn byte_chars() -> Vec<char> {
        let printable = |b: u32| {
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b)
        };
        let mut next = 256;
        (0..256u32)
            .map(|b| {
                if printable(b) {
                    char::from_u32(b).unwrap()
                } else {
                    next += 1;
                    char::from_u32(next - 1).unwrap()
                }
            })
            .collect()
    }

    /// Every pre-tokenizer's regexes compile, merges apply, and text
    /// survives the trip.
    #[test]
    fn every_pre_tokenizer_builds_and_round_trips() {
        let mut tokens: Vec<String> = byte_chars().into_iter().map(String::from).collect();
        tokens.extend(["Ġt", "he", "Ġthe", "<|endoftext|>"].map(String::from));
        // `<|endoftext|>` typed normal: still matched whole, as llama.cpp
        // treats end-of-turn markers as control tokens.
        let token_types = vec![token_type::NORMAL; tokens.len()];
        let text = "Hello, World! the 1234 don't  x\n\n\t¿Qué? 日本語 ПРИВЕТмир<|endoftext|>";
        for name in supported_pre_tokenizers() {
            let vocab = GgufVocab {
                model: "gpt2".into(),
                pre: Some(name.into()),
                tokens: tokens.clone(),
                token_types: token_types.clone(),
                merges: vec!["Ġ t".into(), "h e".into(), "Ġt he".into()],
                eos_token_id: Some(259),
                ..GgufVocab::default()
            };
            let t = Tokenizer::from_gguf(&vocab, Path::new("tiny.gguf"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let ids = t.encode(text).unwrap();
            assert!(ids.contains(&258), "{name}: `Ġthe` not merged: {ids:?}");
            assert_eq!(*ids.last().unwrap(), 259, "{name}");
            assert_eq!(t.decode_with_special(&ids).unwrap(), text, "{name}");
        }
    }

    #[test]
    fn pre_tokenizer_names_are_unique() {
        let names = supported_pre_tokenizers();
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }
}
