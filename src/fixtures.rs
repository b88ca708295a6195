//! Tiny random models written as real Hugging Face folders (config.json,
//! model.safetensors, tokenizer.json, tokenizer_config.json with a ChatML
//! template), for tests and demos that need a model in milliseconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_rs::Array;
use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

pub struct TinyModel {
    pub hidden: i32,
    pub layers: i32,
    pub heads: i32,
    pub kv_heads: i32,
    pub intermediate: i32,
    pub model_type: &'static str,
    pub tie_word_embeddings: bool,
}

impl Default for TinyModel {
    fn default() -> Self {
        Self {
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 128,
            model_type: "llama",
            tie_word_embeddings: false,
        }
    }
}

/// A byte-level BPE tokenizer over the 256 byte symbols plus a few merges
/// and ChatML's special tokens; returns its vocabulary size.
pub fn write_tokenizer(dir: &Path) -> usize {
    let mut vocab: tokenizers::models::bpe::Vocab = Default::default();
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort();
    for c in alphabet {
        let id = vocab.len() as u32;
        vocab.insert(c.to_string(), id);
    }
    let merges: Vec<(String, String)> = [("h", "e"), ("l", "l"), ("he", "ll"), ("Ġ", "w")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    for (a, b) in &merges {
        let id = vocab.len() as u32;
        vocab.insert(format!("{a}{b}"), id);
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .expect("fixture");
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer.add_special_tokens(&[
        tokenizers::AddedToken::from("<|endoftext|>", true),
        tokenizers::AddedToken::from("<|im_start|>", true),
        tokenizers::AddedToken::from("<|im_end|>", true),
    ]);
    tokenizer
        .save(dir.join("tokenizer.json"), false)
        .expect("fixture");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        json!({
            "bos_token": "<|im_start|>",
            "eos_token": "<|im_end|>",
            "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        })
        .to_string(),
    )
    .expect("fixture");
    tokenizer.get_vocab_size(true)
}

fn random(shape: &[i32]) -> Array {
    random_std(shape, 0.02)
}

fn random_std(shape: &[i32], std: f32) -> Array {
    mlx_rs::random::normal::<f32>(shape, None, std, None).expect("fixture")
}

impl TinyModel {
    /// Writes the folder and returns its path (inside `root`).
    pub fn write(&self, root: &Path) -> PathBuf {
        let dir = root.join(format!("tiny-{}", self.model_type));
        std::fs::create_dir_all(&dir).expect("fixture");
        let vocab = write_tokenizer(&dir) as i32;
        let head_dim = self.hidden / self.heads;
        let config = json!({
            "model_type": self.model_type,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "vocab_size": vocab,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": self.tie_word_embeddings,
        });
        std::fs::write(dir.join("config.json"), config.to_string()).expect("fixture");

        mlx_rs::random::seed(42).expect("fixture");
        let mut t: HashMap<String, Array> = HashMap::new();
        t.insert(
            "model.embed_tokens.weight".into(),
            random(&[vocab, self.hidden]),
        );
        t.insert(
            "model.norm.weight".into(),
            Array::ones::<f32>(&[self.hidden]).expect("fixture"),
        );
        if !self.tie_word_embeddings {
            t.insert(
                "lm_head.weight".into(),
                random_std(&[vocab, self.hidden], 0.3),
            );
        }
        let qkv_bias = self.model_type == "qwen2";
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            let kv = self.kv_heads * head_dim;
            for (name, out, inp) in [
                ("self_attn.q_proj", self.hidden, self.hidden),
                ("self_attn.k_proj", kv, self.hidden),
                ("self_attn.v_proj", kv, self.hidden),
                ("self_attn.o_proj", self.hidden, self.hidden),
                ("mlp.gate_proj", self.intermediate, self.hidden),
                ("mlp.up_proj", self.intermediate, self.hidden),
                ("mlp.down_proj", self.hidden, self.intermediate),
            ] {
                t.insert(format!("{p}.{name}.weight"), random(&[out, inp]));
                if qkv_bias && name != "self_attn.o_proj" && name.starts_with("self_attn") {
                    t.insert(format!("{p}.{name}.bias"), random(&[out]));
                }
            }
            for norm in ["input_layernorm", "post_attention_layernorm"] {
                t.insert(
                    format!("{p}.{norm}.weight"),
                    Array::ones::<f32>(&[self.hidden]).expect("fixture"),
                );
            }
        }
        Array::save_safetensors(&t, None, dir.join("model.safetensors")).expect("fixture");
        dir
    }
}

/// A small chat dataset (`train.jsonl` in `dir`): `n` greetings answered the
/// same way, easy to overfit.
pub fn write_chat_data(dir: &Path, n: usize) -> PathBuf {
    let mut lines = String::new();
    for i in 0..n {
        let record = json!({"messages": [
            {"role": "user", "content": format!("hello {}", i % 3)},
            {"role": "assistant", "content": "well hello"},
        ]});
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    let path = dir.join("train.jsonl");
    std::fs::write(&path, lines).expect("writable fixture folder");
    path
}
