//! The tokenizer a GGUF file describes (`tokenizer.ggml.*`), read and checked.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The tokenizer as GGUF stores it. Optional keys stay `None` when absent:
/// the defaults depend on the tokenizer model and are applied by
/// [`crate::tokenizer::Tokenizer::from_gguf`], as llama.cpp applies them.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `llama` (SentencePiece), `gpt2` (byte-level
    /// BPE), `gemma4`, `bert`, `t5`, …
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer (`llama-bpe`, `qwen2`, …).
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// One per token, or empty when the file has none.
    pub scores: Vec<f32>,
    /// One per token (see [`token_type`]), or empty when the file has none.
    pub token_types: Vec<i32>,
    /// `"left right"` pairs, highest priority first (BPE models).
    pub merges: Vec<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// End of turn (`tokenizer.ggml.eot_token_id`).
    pub eot_token_id: Option<u32>,
    /// End of message (`tokenizer.ggml.eom_token_id`).
    pub eom_token_id: Option<u32>,
    pub unknown_token_id: Option<u32>,
    pub padding_token_id: Option<u32>,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.remove_extra_whitespaces` (SentencePiece option).
    pub remove_extra_whitespaces: Option<bool>,
    /// `general.name`: llama.cpp changes a few token attributes by model name.
    pub model_name: Option<String>,
}

const MODEL: &str = "tokenizer.ggml.model";
const TOKENS: &str = "tokenizer.ggml.tokens";

impl GgufVocab {
    /// Reads `tokenizer.ggml.*` and checks it: scores and token types one
    /// per token, special ids inside the vocabulary, merges `"left right"`.
    pub fn read(file: &GgufFile) -> Result<GgufVocab> {
        let source = file.path().display().to_string();
        let bad = |key: &str, what: String| Error::Invalid(format!("{source}: `{key}` {what}"));

        let model = file
            .get_str(MODEL)?
            .ok_or_else(|| bad(MODEL, "is missing: the file has no tokenizer".into()))?
            .to_string();
        let tokens = file
            .get_strings(TOKENS)?
            .ok_or_else(|| bad(TOKENS, "is missing: the file has no tokenizer".into()))?
            .to_vec();
        if tokens.is_empty() {
            return Err(bad(TOKENS, "is empty".into()));
        }
        let n = tokens.len();

        let scores_key = "tokenizer.ggml.scores";
        let scores = file.get_f32_array(scores_key)?.unwrap_or_default();
        if !scores.is_empty() && scores.len() != n {
            return Err(bad(
                scores_key,
                format!("has {} entries for {n} tokens", scores.len()),
            ));
        }
        let types_key = "tokenizer.ggml.token_type";
        let token_types = file.get_i32_array(types_key)?.unwrap_or_default();
        if !token_types.is_empty() && token_types.len() != n {
            return Err(bad(
                types_key,
                format!("has {} entries for {n} tokens", token_types.len()),
            ));
        }

        let merges_key = "tokenizer.ggml.merges";
        let merges = file
            .get_strings(merges_key)?
            .map(<[String]>::to_vec)
            .unwrap_or_default();
        for (i, m) in merges.iter().enumerate() {
            if split_merge(m).is_none() {
                return Err(bad(
                    merges_key,
                    format!("entry {i} `{m}` is not two tokens separated by a space"),
                ));
            }
        }

        let id = |key: &str| -> Result<Option<u32>> {
            match file.get_u64(key)? {
                None => Ok(None),
                Some(v) if v < n as u64 => Ok(Some(v as u32)),
                Some(v) => Err(bad(
                    key,
                    format!("is {v}, outside the vocabulary of {n} tokens"),
                )),
            }
        };
        let name = file.get_str("general.name")?.map(str::to_string);
        Ok(GgufVocab {
            model,
            pre: file.get_str("tokenizer.ggml.pre")?.map(str::to_string),
            scores,
            token_types,
            merges,
            bos_token_id: id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: id("tokenizer.ggml.eos_token_id")?,
            eot_token_id: id("tokenizer.ggml.eot_token_id")?,
            eom_token_id: id("tokenizer.ggml.eom_token_id")?,
            unknown_token_id: id("tokenizer.ggml.unknown_token_id")?,
            padding_token_id: id("tokenizer.ggml.padding_token_id")?,
            add_bos_token: file.get_bool("tokenizer.ggml.add_bos_token")?,
            add_eos_token: file.get_bool("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: file.get_bool("tokenizer.ggml.add_space_prefix")?,
            remove_extra_whitespaces: file.get_bool("tokenizer.ggml.remove_extra_whitespaces")?,
            model_name: name,
            tokens,
        })
    }

    /// The llama.cpp type of token `id` (normal when the file has none).
    pub fn token_type(&self, id: usize) -> i32 {
        self.token_types
            .get(id)
            .copied()
            .unwrap_or(token_type::NORMAL)
    }

    /// The score of token `id` (0 when the file has none).
    pub fn score(&self, id: usize) -> f32 {
        self.scores.get(id).copied().unwrap_or(0.0)
    }

    /// Token texts that occur more than once (llama.cpp keeps the last id
    /// for encoding).
    pub fn duplicate_tokens(&self) -> usize {
        let mut seen = HashSet::with_capacity(self.tokens.len());
        self.tokens
            .iter()
            .filter(|t| !seen.insert(t.as_str()))
            .count()
    }
}

/// `"left right"` → (`left`, `right`), split at the first space after the
/// first character, as llama.cpp does (so a left token may be a space).
pub fn split_merge(merge: &str) -> Option<(&str, &str)> {
    let first = merge.chars().next()?.len_utf8();
    let pos = first + merge[first..].find(' ')?;
    let (left, right) = (&merge[..pos], &merge[pos + 1..]);
    (!right.is_empty()).then_some((left, right))
}

#[cfg(test)]
mod tests {
    use super::split_merge;

    #[test]
    fn merges_split_at_the_first_space_after_the_first_character() {
        assert_eq!(split_merge("Ġ t"), Some(("Ġ", "t")));
        assert_eq!(split_merge("  a"), Some((" ", "a")));
        assert_eq!(split_merge("ab cd"), Some(("ab", "cd")));
        assert_eq!(split_merge("abc"), None);
        assert_eq!(split_merge("a "), None);
        assert_eq!(split_merge(""), None);
    }
}
