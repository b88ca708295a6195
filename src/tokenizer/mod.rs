//! Text ⇄ token ids through Hugging Face `tokenizers`, from a
//! `tokenizer.json` or rebuilt from a GGUF file's vocabulary.

use std::path::Path;

use crate::error::{Error, Result};

pub mod gguf;
pub mod llama_cpp;

pub use gguf::GgufVocab;

/// A half-open byte range `start..end` of a text.
pub type ByteSpan = (usize, usize);

/// A tokenizer with the special tokens a chat template needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Ids that end generation (eos and end-of-turn tokens).
    pub stop_ids: Vec<u32>,
    /// Whether the model expects BOS before a text (llama.cpp's `add_bos`,
    /// `tokenizer_config.json`'s `add_bos_token`). [`Tokenizer::encode`]
    /// never adds it (chat templates write it); a caller that wants it
    /// prepends [`Tokenizer::bos_token_id`].
    pub add_bos_token: bool,
    /// Whether the model expects EOS after a text (never added by `encode`).
    pub add_eos_token: bool,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
}

impl Tokenizer {
    /// Loads `tokenizer.json`; special tokens from `tokenizer_config.json` when given.
    pub fn from_files(tokenizer_json: &Path, config: Option<&serde_json::Value>) -> Result<Self> {
        // The tokenizers crate panics on some malformed files (a bad
        // `decoder`): that is bad input too.
        let inner = crate::error::catch_panic(|| tokenizers::Tokenizer::from_file(tokenizer_json))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e: String| {
                Error::Invalid(format!(
                    "{}: cannot load tokenizer: {}",
                    tokenizer_json.display(),
                    crate::error::without_source_locations(&e)
                ))
            })?;
        let token = |key: &str| -> Option<String> {
            let v = config?.get(key)?;
            v.as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))
                .map(str::to_string)
        };
        let flag = |key: &str| -> bool {
            config
                .and_then(|c| c.get(key))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
        };
        let mut tokenizer = Self {
            inner,
            bos_token: token("bos_token"),
            eos_token: token("eos_token"),
            stop_ids: Vec::new(),
            add_bos_token: flag("add_bos_token"),
            add_eos_token: flag("add_eos_token"),
            bos_id: None,
            eos_id: None,
        };
        tokenizer.bos_id = tokenizer
            .bos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t));
        tokenizer.eos_id = tokenizer
            .eos_token
            .as_deref()
            .and_then(|t| tokenizer.token_to_id(t));
        tokenizer.stop_ids = tokenizer.default_stop_ids(None);
        Ok(tokenizer)
    }

    /// Rebuilds the tokenizer a GGUF file describes so that it gives
    /// llama.cpp's token ids: SentencePiece (`llama`), byte-level BPE
    /// (`gpt2`) with each pre-tokenizer in
    /// [`llama_cpp::supported_pre_tokenizers`], and Gemma 4's BPE. Anything
    /// else is an error that names what is unsupported.
    pub fn from_gguf(vocab: &GgufVocab, source: &Path) -> Result<Self> {
        let built = llama_cpp::build(vocab, source)?;
        let name = |id: Option<u32>| id.and_then(|i| vocab.tokens.get(i as usize).cloned());
        let mut tokenizer = Self {
            inner: built.inner,
            bos_token: name(built.bos_token_id),
            eos_token: name(built.eos_token_id),
            stop_ids: Vec::new(),
            add_bos_token: built.add_bos,
            add_eos_token: built.add_eos,
            bos_id: built.bos_token_id,
            eos_id: built.eos_token_id,
        };
        tokenizer.stop_ids = tokenizer.default_stop_ids(built.eos_token_id);
        for id in [vocab.eot_token_id, vocab.eom_token_id]
            .into_iter()
            .flatten()
        {
            if !tokenizer.stop_ids.contains(&id) {
                tokenizer.stop_ids.push(id);
            }
        }
        Ok(tokenizer)
    }

    /// The id of the BOS token, when the model has one.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// The id of the EOS token, when the model has one.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Whether special tokens written in a text are recognised by `encode`
    /// (the default) or tokenized as plain text (llama.cpp's
    /// `parse_special = false`). User-defined tokens are matched either way.
    pub fn set_parse_special(&mut self, parse: bool) {
        self.inner.set_encode_special_tokens(!parse);
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

impl Tokenizer {
    /// The BOS to put before a plain text (not a chat, whose template writes
    /// its own), when the model expects one (Gemma does; SmolLM2 does not).
    pub fn text_bos(&self) -> Option<u32> {
        self.bos_token_id().filter(|_| self.add_bos_token)
    }
}
