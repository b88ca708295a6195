//! Text ⇄ token ids through Hugging Face `tokenizers`, from a
//! `tokenizer.json` or rebuilt from a GGUF file's vocabulary.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

use crate::error::{Error, Result};
use crate::model::gguf::GgufVocab;

/// A half-open byte range `start..end` of a text.
pub type ByteSpan = (usize, usize);

/// A tokenizer with the special tokens a chat template needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Ids that end generation (eos and end-of-turn tokens).
    pub stop_ids: Vec<u32>,
}

impl Tokenizer {
    /// Loads `tokenizer.json`; special tokens from `tokenizer_config.json` when given.
    pub fn from_files(tokenizer_json: &Path, config: Option<&serde_json::Value>) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(tokenizer_json).map_err(|e| {
            Error::Invalid(format!(
                "{}: cannot load tokenizer: {e}",
                tokenizer_json.display()
            ))
        })?;
        let token = |key: &str| -> Option<String> {
            let v = config?.get(key)?;
            v.as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))
                .map(str::to_string)
        };
        let mut tokenizer = Self {
            inner,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            stop_ids: Vec::new(),
        };
        tokenizer.stop_ids = tokenizer.default_stop_ids(None);
        Ok(tokenizer)
    }

    /// Rebuilds the tokenizer a GGUF file describes. Byte-level BPE (`gpt2`)
    /// vocabularies are supported.
    pub fn from_gguf(vocab: &GgufVocab, source: &Path) -> Result<Self> {
        if vocab.model != "gpt2" {
            return Err(Error::Invalid(format!(
                "{}: GGUF tokenizer model `{}` is not supported yet (supported: gpt2 byte-level BPE)",
                source.display(),
                vocab.model
            )));
        }
        let ids: tokenizers::models::bpe::Vocab = vocab
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = vocab
            .merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        Error::Invalid(format!("{}: malformed BPE merge `{m}`", source.display()))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(ids, merges)
            .build()
            .map_err(|e| {
                Error::Invalid(format!("{}: bad BPE vocabulary: {e}", source.display()))
            })?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        // The GPT-2 split; pre-tokenizers that name digit handling split
        // digits one by one first, as their tokenizer.json does.
        let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
        let splits_digits = matches!(
            vocab.pre.as_deref(),
            Some("smollm" | "qwen2" | "deepseek-llm")
        );
        let pre = if splits_digits {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                byte_level,
            ]))
        } else {
            byte_level
        };
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        // Control tokens (type 3) are matched whole, never split by BPE.
        let specials: Vec<AddedToken> = vocab
            .token_types
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == 3)
            .map(|(i, _)| AddedToken::from(vocab.tokens[i].clone(), true))
            .collect();
        inner.add_special_tokens(&specials);
        let name = |id: Option<u32>| id.and_then(|i| vocab.tokens.get(i as usize).cloned());
        let mut tokenizer = Self {
            inner,
            bos_token: name(vocab.bos_token_id),
            eos_token: name(vocab.eos_token_id),
            stop_ids: Vec::new(),
        };
        tokenizer.stop_ids = tokenizer.default_stop_ids(vocab.eos_token_id);
        Ok(tokenizer)
    }

    /// eos plus the end-of-turn markers common chat formats use.
    fn default_stop_ids(&self, eos_id: Option<u32>) -> Vec<u32> {
        let mut ids: Vec<u32> = eos_id.into_iter().collect();
        let names = self.eos_token.iter().map(String::as_str).chain([
            "<|im_end|>",
            "<|eot_id|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
        ]);
        for name in names {
            if let Some(id) = self.inner.token_to_id(name) {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// Token ids of `text`; special tokens written in the text are recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Invalid(format!("cannot tokenize: {e}")))
    }

    /// Token ids with the byte range of `text` each one covers.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<ByteSpan>)> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Invalid(format!("cannot tokenize: {e}")))?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Invalid(format!("cannot decode: {e}")))
    }

    /// Text of `ids` with special tokens written out (for previews).
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Invalid(format!("cannot decode: {e}")))
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, false)
            .map_err(|e| Error::Invalid(format!("{}: cannot write tokenizer: {e}", path.display())))
    }

    /// The whole tokenizer as JSON: identical for identical tokenizers (a
    /// cache key ingredient).
    pub fn fingerprint(&self) -> String {
        self.inner.to_string(false).unwrap_or_default()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
