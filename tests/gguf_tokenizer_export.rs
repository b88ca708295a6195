//! The tokenizer a GGUF export writes gives the ids the model was trained
//! with: a tiny model with each tokenizer family FineTune trains (byte-level
//! BPE: GPT-2, SmolLM2, Qwen2/3, Llama 3; SentencePiece: Llama 2 style with
//! the `▁` prefix, Gemma without it) is exported with `write_gguf`, read
//! back with FineTune's GGUF reader (`model::load` on the .gguf), and must
//! encode multilingual text, code and chat turns to the same ids as the
//! folder's own tokenizer. Where the vocabulary comes from one of
//! llama.cpp's test vocabularies, the exported file also gives llama.cpp's
//! own ids for its test cases.
//!
//! Real vocabularies come from `.cache` (llama.cpp's test vocabularies,
//! `scripts/fetch_llama_vocabs.sh`; the SmolLM2 and Gemma 3 GGUFs); a test
//! whose file is missing says so and passes. Their tokenizer.json is the
//! vocabulary as FineTune reads it, with the pre-tokenizer / normalizer the
//! model's real tokenizer.json has.
//!
//! Also: a GGUF base keeps its tokenizer metadata verbatim; tokenizers
//! llama.cpp cannot reproduce are refused; the settings GGUF cannot hold
//! are reported as warnings.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::TinyModel;
use finetune::export::gguf::{write_gguf, GgufReport};
use finetune::gguf::mix::FileType;
use finetune::gguf::GgufFile;
use finetune::mlx_rs::Array;
use finetune::model::{self, LoadOptions};
use finetune::tokenizer::{GgufVocab, Tokenizer};
use serde_json::{json, Value as Json};

/// English, accents, German, Chinese, Japanese, Russian, Arabic, emoji,
/// code with tabs / newlines / runs of spaces, digits.
const MULTILINGUAL: &[&str] = &[
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "Café naïve résumé — à la carte, déjà vu; São Paulo, Ærøskøbing.",
    "Größenwahn: Die Straße ist für Fußgänger gesperrt, übrigens.",
    "我们今天去北京看长城，天气很好。",
    "日本語のテキストです。東京タワーに行きました！カタカナ",
    "Привет, как дела? Москва — столица России.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "Emoji: 🤗🚀👍🏽 ❤️ 🇩🇪 family: 👨‍👩‍👧",
    "fn main() {\n\tlet x = 42;\n    if x > 1 {\n\t\tprintln!(\"{x}\");\n    }\n}\n",
    "   leading spaces,  double  spaces,\ttabs\t\tand\n\n\nnewlines   \n",
    "Digits: 0 7 42 123 1234 12345678 3.14159 -2026-12-01 $1,234.56 100%",
    "Mixed: naïve 東京 Москва 🤗 x=1;\ty = 2  // ok",
];

/// Chat markers tried in the chat turns (those the vocabulary has).
const MARKERS: &[&str] = &[
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<bos>",
    "<eos>",
    "<s>",
    "</s>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
];

fn cache() -> PathBuf {
    finetune::paths::cache_dir()
}

/// `path` when it exists; else None after saying which test skips.
fn cached(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {what} needs {}, which is missing (scripts/fetch_llama_vocabs.sh, \
             scripts/fetch_gemma3.sh)",
            path.display()
        );
        None
    }
}

fn chat_texts(tokenizer: &Tokenizer) -> Vec<String> {
    let present: Vec<&str> = MARKERS
        .iter()
        .copied()
        // Markers the tokenizer matches whole (Qwen's vocabulary has `</s>`
        // as plain text, which its tokenizer splits, but llama.cpp makes
        // every `</s>` a control token whatever the file says).
        .filter(|m| {
            let id = tokenizer.token_to_id(m);
            id.is_some() && tokenizer.encode(m).ok() == id.map(|i| vec![i])
        })
        .collect();
    assert!(!present.is_empty(), "the vocabulary has no chat marker");
    let mut texts: Vec<String> = present
        .iter()
        .map(|m| format!("{m}user\nWie geht's? 你好 🤗{m}\n{m}model\n  Très bien!\n"))
        .collect();
    texts.push(present.join("Hi there\n"));
    texts
}

/// The ids `a` and `b` give every text must be the same.
fn same_ids(a: &Tokenizer, b: &Tokenizer, texts: &[String], what: &str) {
    for text in texts {
        let (x, y) = (a.encode(text).unwrap(), b.encode(text).unwrap());
        assert_eq!(x, y, "{what}: {text:?}");
    }
}

fn all_texts(tokenizer: &Tokenizer) -> Vec<String> {
    let mut texts: Vec<String> = MULTILINGUAL.iter().map(|s| s.to_string()).collect();
    texts.push(MULTILINGUAL.concat());
    texts.extend(chat_texts(tokenizer));
    texts
}

fn export(folder: &Path, out: &Path) -> (GgufReport, model::LoadedModel, model::LoadedModel) {
    let loaded = model::load(folder, &LoadOptions::default()).unwrap();
    let path = out.join("exported.gguf");
    let report = write_gguf(&loaded, &path, FileType::F32, "tokenizer-test").unwrap();
    let back = model::load(&path, &LoadOptions::default()).unwrap();
    (report, loaded, back)
}

/// Exports `folder`, reads it back and checks the tokenizers agree; returns
/// the written file.
fn round_trip(folder: &Path, out: &Path) -> GgufFile {
    let (_, loaded, back) = export(folder, out);
    let (a, b) = (&loaded.tokenizer, &back.tokenizer);
    same_ids(a, b, &all_texts(a), &folder.display().to_string());
    assert_eq!(a.bos_token_id(), b.bos_token_id(), "bos");
    assert_eq!(a.eos_token_id(), b.eos_token_id(), "eos");
    GgufFile::open(&out.join("exported.gguf")).unwrap()
}

fn string_key(file: &GgufFile, key: &str) -> String {
    file.get_str(key).unwrap().unwrap_or("").to_string()
}

/// A tiny llama model whose tokenizer is `tokenizer_json` (embeddings sized
/// to its vocabulary).
fn tiny_model_with(root: &Path, tokenizer_json: &Json, config: &Json) -> PathBuf {
    let dir = TinyModel {
        hidden: 16,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        intermediate: 32,
        tie_word_embeddings: true,
        ..TinyModel::default()
    }
    .write(root);
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let n = Tokenizer::from_files(&dir.join("tokenizer.json"), Some(config))
        .unwrap()
        .vocab_size() as i32;
    let config_path = dir.join("config.json");
    let mut model_config: Json =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    model_config["vocab_size"] = json!(n);
    std::fs::write(&config_path, model_config.to_string()).unwrap();
    let weights = dir.join("model.safetensors");
    let mut tensors = Array::load_safetensors(&weights).unwrap();
    let embed = finetune::mlx_rs::random::normal::<f32>(&[n, 16], None, 0.02, None).unwrap();
    tensors.insert("model.embed_tokens.weight".into(), embed);
    // The loaded arrays read the file lazily: write beside it, then replace.
    let fresh = dir.join("resized.safetensors");
    Array::save_safetensors(&tensors, None, &fresh).unwrap();
    std::fs::rename(&fresh, &weights).unwrap();
    dir
}

/// The tokenizer.json of a GGUF vocabulary as FineTune reads it, with
/// `pre_tokenizer` / `normalizer` replaced when given, and its
/// tokenizer_config.json.
fn tokenizer_json_of(
    gguf: &Path,
    pre_tokenizer: Option<Json>,
    normalizer: Option<Json>,
) -> (Json, Json, GgufVocab) {
    let file = GgufFile::open(gguf).unwrap();
    let vocab = GgufVocab::read(&file).unwrap();
    let tokenizer = Tokenizer::from_gguf(&vocab, gguf).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    tokenizer.save(&path).unwrap();
    let mut json: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    if let Some(pre) = pre_tokenizer {
        json["pre_tokenizer"] = pre;
    }
    if let Some(norm) = normalizer {
        json["normalizer"] = norm;
    }
    let pad = vocab
        .padding_token_id
        .map(|id| vocab.tokens[id as usize].clone());
    let config = json!({
        "pad_token": pad,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "add_bos_token": tokenizer.add_bos_token,
        "add_eos_token": tokenizer.add_eos_token,
    });
    (json, config, vocab)
}

/// llama.cpp's test cases of a `ggml-vocab-*.gguf` (`.inp` / `.out`).
fn llama_cpp_cases(gguf: &Path) -> BTreeMap<String, Vec<u32>> {
    let read = |ext: &str| std::fs::read_to_string(format!("{}.{ext}", gguf.display())).ok();
    let (Some(inp), Some(out)) = (read("inp"), read("out")) else {
        return BTreeMap::new();
    };
    let mut inputs: Vec<String> = inp
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_string)
        .collect();
    if inp.ends_with("\n__ggml_vocab_test__\n") {
        inputs.pop();
    }
    let outputs = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect());
    inputs.into_iter().zip(outputs).collect()
}

/// The exported file gives llama.cpp's own ids for the source vocabulary's
/// test cases (special tokens not parsed, as llama.cpp's test runs them).
fn gives_llama_cpp_ids(source: &Path, exported: &GgufFile) {
    let cases = llama_cpp_cases(source);
    if cases.is_empty() {
        return;
    }
    let vocab = GgufVocab::read(exported).unwrap();
    let mut t = Tokenizer::from_gguf(&vocab, exported.path()).unwrap();
    t.set_parse_special(false);
    for (text, want) in &cases {
        assert_eq!(&t.encode(text).unwrap(), want, "llama.cpp's case {text:?}");
    }
}

/// A vocabulary of llama.cpp's tests as a folder's tokenizer.json, round
/// tripped; returns the file written.
fn vocab_round_trip(
    name: &str,
    pre_tokenizer: Option<Json>,
    normalizer: Option<Json>,
) -> Option<(tempfile::TempDir, GgufFile)> {
    let source = cached(
        cache()
            .join("llama-vocabs")
            .join(format!("ggml-vocab-{name}.gguf")),
        name,
    )?;
    Some(file_round_trip(&source, pre_tokenizer, normalizer))
}

fn file_round_trip(
    source: &Path,
    pre: Option<Json>,
    norm: Option<Json>,
) -> (tempfile::TempDir, GgufFile) {
    let tmp = tempfile::tempdir().unwrap();
    let (json, config, _) = tokenizer_json_of(source, pre, norm);
    let folder = tiny_model_with(tmp.path(), &json, &config);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let file = round_trip(&folder, &out);
    gives_llama_cpp_ids(source, &file);
    (tmp, file)
}

fn byte_level(use_regex: bool) -> Json {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

fn split_then_byte_level(regex: &str) -> Json {
    json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
        byte_level(false),
    ]})
}

// ---------------------------------------------------------------- byte-level BPE

#[test]
fn byte_level_bpe_of_the_tiny_fixture_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = TinyModel::default().write(tmp.path());
    let file = round_trip(&folder, tmp.path());
    assert_eq!(string_key(&file, "tokenizer.ggml.model"), "gpt2");
    assert_eq!(string_key(&file, "tokenizer.ggml.pre"), "gpt-2");
}

#[test]
fn gpt2_tokenizer_round_trips_as_gpt_2() {
    // GPT-2's tokenizer.json: ByteLevel with its own regex.
    if let Some((_dir, file)) = vocab_round_trip("gpt-2", Some(byte_level(true)), None) {
        assert_eq!(string_key(&file, "tokenizer.ggml.pre"), "gpt-2");
    }
}

#[test]
fn qwen2_tokenizer_round_trips_as_qwen2() {
    // Qwen2 / Qwen3's tokenizer.json: NFC, single digits, then ByteLevel.
    let regex = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let nfc = json!({"type": "NFC"});
    if let Some((_dir, file)) =
        vocab_round_trip("qwen2", Some(split_then_byte_level(regex)), Some(nfc))
    {
        assert_eq!(string_key(&file, "tokenizer.ggml.pre"), "qwen2");
    }
}

#[test]
fn llama3_tokenizer_round_trips_as_llama_bpe() {
    // Llama 3's tokenizer.json: digits in groups of up to three.
    let regex = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    if let Some((_dir, file)) =
        vocab_round_trip("llama-bpe", Some(split_then_byte_level(regex)), None)
    {
        assert_eq!(string_key(&file, "tokenizer.ggml.pre"), "llama-bpe");
        assert_eq!(
            file.get_bool("tokenizer.ggml.add_bos_token").unwrap(),
            Some(true)
        );
    }
}

#[test]
fn smollm2_tokenizer_round_trips_as_smollm() {
    // SmolLM2's tokenizer.json: single digits, then ByteLevel with GPT-2's regex.
    let Some(source) = cached(
        cache().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "SmolLM2",
    ) else {
        return;
    };
    let pre = json!({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": true},
        byte_level(true),
    ]});
    let (_dir, file) = file_round_trip(&source, Some(pre), None);
    assert_eq!(string_key(&file, "tokenizer.ggml.pre"), "smollm");
}

// ---------------------------------------------------------------- SentencePiece

#[test]
fn llama2_sentencepiece_tokenizer_round_trips_with_space_prefix() {
    // Llama 2 / Mistral's tokenizer.json: BPE with byte fallback, `▁` for
    // spaces and a `▁` prepended (what FineTune reads from the GGUF).
    let Some((_dir, file)) = vocab_round_trip("llama-spm", None, None) else {
        return;
    };
    sentencepiece_keys(&file, true);
}

#[test]
fn gemma3_sentencepiece_tokenizer_round_trips_without_space_prefix() {
    // Gemma 3's tokenizer.json: `▁` for spaces, no prefix, split after spaces.
    let Some(source) = cached(cache().join("models/gemma-3-270m-q4_k_m.gguf"), "Gemma 3") else {
        return;
    };
    let norm = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
    let pre = json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false});
    let (_dir, file) = file_round_trip(&source, Some(pre), Some(norm));
    sentencepiece_keys(&file, false);
    // The ids llama.cpp's converter wrote for Gemma 3.
    let original = GgufVocab::read(&GgufFile::open(&source).unwrap()).unwrap();
    let ours = GgufVocab::read(&file).unwrap();
    assert_eq!(ours.tokens.len(), original.tokens.len());
    assert_eq!(ours.bos_token_id, original.bos_token_id);
    assert_eq!(ours.eos_token_id, original.eos_token_id);
    assert_eq!(ours.padding_token_id, original.padding_token_id);
    for (i, (a, b)) in ours
        .token_types
        .iter()
        .zip(&original.token_types)
        .enumerate()
    {
        assert_eq!(a, b, "token {i} `{}`: type", original.tokens[i]);
    }
}

fn sentencepiece_keys(file: &GgufFile, prefix: bool) {
    assert_eq!(string_key(file, "tokenizer.ggml.model"), "llama");
    assert_eq!(
        file.get_bool("tokenizer.ggml.add_space_prefix").unwrap(),
        Some(prefix)
    );
    let vocab = GgufVocab::read(file).unwrap();
    assert_eq!(vocab.scores.len(), vocab.tokens.len());
    let byte = finetune::tokenizer::gguf::token_type::BYTE;
    let bytes = vocab.token_types.iter().filter(|&&t| t == byte).count();
    assert_eq!(bytes, 256, "one byte token per byte");
}

/// A tiny SentencePiece-style tokenizer.json (always present): `<unk>`,
/// `<s>`, `</s>`, the byte tokens, a few pieces and merges, ChatML markers.
fn tiny_sentencepiece(prepend: bool) -> Json {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert(t.to_string(), json!(i));
    }
    for b in 0..=255u32 {
        vocab.insert(format!("<0x{b:02X}>"), json!(3 + b));
    }
    let pieces = [
        "▁", "e", "l", "o", "h", "w", "r", "d", "ll", "he", "▁w", "or", "▁h", "lo", "llo", "hello",
        "▁hello", "▁wor", "▁world", "é", "▁é", "t", "▁t", "▁té",
    ];
    let mut next = 259;
    for p in pieces {
        vocab.insert(p.to_string(), json!(next));
        next += 1;
    }
    let merges = [
        ("l", "l"),
        ("h", "e"),
        ("▁", "w"),
        ("o", "r"),
        ("▁", "h"),
        ("l", "o"),
        ("ll", "o"),
        ("he", "llo"),
        ("▁", "hello"),
        ("▁w", "or"),
        ("▁", "é"),
        ("▁", "t"),
        ("▁t", "é"),
    ];
    // No merge makes `▁world` (nor could llama.cpp: no two pieces make it).
    let added = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let normalizer = if prepend {
        json!({"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ]})
    } else {
        json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>"),
                         added(next, "<|im_start|>"), added(next + 1, "<|im_end|>")],
        "normalizer": normalizer,
        "pre_tokenizer": null,
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab,
                  "merges": merges.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>()},
    })
}

#[test]
fn tiny_sentencepiece_bpe_round_trips_with_scores_from_its_merges() {
    for prepend in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let config = json!({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>"});
        let folder = tiny_model_with(tmp.path(), &tiny_sentencepiece(prepend), &config);
        let file = round_trip(&folder, tmp.path());
        sentencepiece_keys(&file, prepend);
        let vocab = GgufVocab::read(&file).unwrap();
        let id = |t: &str| vocab.tokens.iter().position(|x| x == t).unwrap();
        // The first merge's piece scores highest; the byte tokens 0.
        assert!(vocab.scores[id("ll")] > vocab.scores[id("he")]);
        assert!(vocab.scores[id("he")] > vocab.scores[id("▁hello")]);
        assert_eq!(vocab.scores[id("<0x41>")], 0.0);
        let types = &vocab.token_types;
        use finetune::tokenizer::gguf::token_type as tt;
        assert_eq!(types[id("<unk>")], tt::CONTROL);
        assert_eq!(types[id("<s>")], tt::CONTROL);
        assert_eq!(types[id("<0x0A>")], tt::BYTE);
        assert_eq!(types[id("hello")], tt::NORMAL);
        assert_eq!(types[id("<|im_end|>")], tt::CONTROL);
        assert_eq!(vocab.unknown_token_id, Some(0));
        assert_eq!(vocab.padding_token_id, Some(0));
        assert_eq!(vocab.bos_token_id, Some(1));
        // tokenizer_config has no add_bos_token: the template's leading <s>.
        assert_eq!(vocab.add_bos_token, Some(true));
        assert_eq!(vocab.add_eos_token, None, "unsaid: llama.cpp's default");
    }
}

#[test]
fn tiny_unigram_tokenizer_exports_its_scores() {
    let mut pieces = vec![
        json!(["<unk>", 0.0]),
        json!(["<s>", 0.0]),
        json!(["</s>", 0.0]),
    ];
    for b in 0..=255u32 {
        pieces.push(json!([format!("<0x{b:02X}>"), 0.0]));
    }
    for (p, s) in [
        ("▁", -2.0),
        ("▁hello", -1.0),
        ("▁world", -1.5),
        ("h", -5.0),
        ("e", -5.0),
        ("l", -5.0),
        ("o", -5.0),
        ("w", -5.0),
        ("r", -5.0),
        ("d", -5.0),
        ("▁h", -3.0),
        ("▁he", -2.5),
        ("▁hel", -2.4),
        ("▁hell", -2.3),
        ("▁w", -3.0),
        ("▁wo", -2.5),
        ("▁wor", -2.4),
        ("▁worl", -2.3),
    ] {
        pieces.push(json!([p, s]));
    }
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "post_processor": null,
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "model": {"type": "Unigram", "unk_id": 0, "vocab": pieces, "byte_fallback": true},
    });
    let tmp = tempfile::tempdir().unwrap();
    let config = json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true});
    let folder = tiny_model_with(tmp.path(), &tokenizer, &config);
    let (report, loaded, back) = export(&folder, tmp.path());
    let file = GgufFile::open(&report.path).unwrap();
    sentencepiece_keys(&file, true);
    let vocab = GgufVocab::read(&file).unwrap();
    let id = |t: &str| vocab.tokens.iter().position(|x| x == t).unwrap();
    assert_eq!(vocab.scores[id("▁hello")], -1.0);
    assert_eq!(vocab.scores[id("▁worl")], -2.3);
    // Where greedy merging finds the Unigram's segmentation, the ids agree.
    for text in ["hello world", "world hello hello"] {
        assert_eq!(
            loaded.tokenizer.encode(text).unwrap(),
            back.tokenizer.encode(text).unwrap(),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------- GGUF bases

#[test]
fn a_gguf_base_keeps_its_tokenizer_metadata_verbatim() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = TinyModel::default().write(tmp.path());
    let first_dir = tmp.path().join("first");
    std::fs::create_dir_all(&first_dir).unwrap();
    let (first, _, from_gguf) = export(&folder, &first_dir);
    assert_eq!(from_gguf.source, first.path);
    let second = tmp.path().join("second.gguf");
    write_gguf(&from_gguf, &second, FileType::F32, "again").unwrap();
    let (a, b) = (
        GgufFile::open(&first.path).unwrap(),
        GgufFile::open(&second).unwrap(),
    );
    let keys = |f: &GgufFile| -> Vec<String> {
        f.keys()
            .filter(|k| k.starts_with("tokenizer."))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(keys(&a), keys(&b));
    for k in keys(&a) {
        assert_eq!(a.value(&k), b.value(&k), "{k}");
    }
}

// ---------------------------------------------------------------- refused

fn export_error(tokenizer: &Json) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let config = json!({"bos_token": "<s>", "eos_token": "</s>"});
    let folder = tiny_model_with(tmp.path(), tokenizer, &config);
    let loaded = model::load(&folder, &LoadOptions::default()).unwrap();
    let path = tmp.path().join("refused.gguf");
    let err = write_gguf(&loaded, &path, FileType::F32, "refused")
        .expect_err("refused")
        .to_string();
    assert!(!path.exists(), "nothing is left behind when refused");
    err
}

#[test]
fn a_word_piece_tokenizer_is_refused_with_the_models_it_could_be() {
    let mut vocab = serde_json::Map::new();
    for (i, t) in [
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "hello",
        "##lo",
        "<|im_start|>",
        "<|im_end|>",
    ]
    .iter()
    .enumerate()
    {
        vocab.insert(t.to_string(), json!(i));
    }
    for i in 7..400 {
        vocab.insert(format!("w{i}"), json!(i));
    }
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    });
    let err = export_error(&tokenizer);
    assert!(err.contains("`WordPiece` model has no GGUF form"), "{err}");
}

#[test]
fn a_sentencepiece_tokenizer_llama_cpp_cannot_reproduce_is_refused() {
    // Lower-casing: llama.cpp does not normalize, so it would see capitals.
    let mut tokenizer = tiny_sentencepiece(true);
    tokenizer["normalizer"]["normalizers"]
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"type": "Lowercase"}));
    let err = export_error(&tokenizer);
    assert!(
        err.contains("llama.cpp would tokenize it differently"),
        "{err}"
    );
}

// ---------------------------------------------------------------- warnings

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn warnings_of(folder: &Path) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = model::load(folder, &LoadOptions::default()).unwrap();
    write_gguf(&loaded, &tmp.path().join("w.gguf"), FileType::F32, "w")
        .unwrap()
        .warnings
}

/// A copy of a parity fixture with `edit` applied to its config.json.
fn edited_fixture(name: &str, root: &Path, edit: impl FnOnce(&mut Json)) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let path = dir.join("config.json");
    let mut config: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    dir
}

fn count(warnings: &[String], needle: &str) -> usize {
    warnings.iter().filter(|w| w.contains(needle)).count()
}

#[test]
fn gemma_query_pre_attn_scalar_other_than_head_dim_is_a_warning() {
    for name in ["gemma2", "gemma3"] {
        let w = warnings_of(&fixture(name));
        assert_eq!(count(&w, "query_pre_attn_scalar"), 1, "{name}: {w:?}");
        let tmp = tempfile::tempdir().unwrap();
        let plain = edited_fixture(name, tmp.path(), |c| c["query_pre_attn_scalar"] = json!(32));
        let w = warnings_of(&plain);
        assert_eq!(count(&w, "query_pre_attn_scalar"), 0, "{name}: {w:?}");
    }
}

#[test]
fn gemma3_layer_pattern_other_than_llama_cpps_is_a_warning() {
    // The fixture's layers: sliding, sliding, full; llama.cpp's default for
    // 3 layers slides all three.
    let w = warnings_of(&fixture("gemma3"));
    assert_eq!(count(&w, "sliding-window layers are 0, 1 here"), 1, "{w:?}");
    let tmp = tempfile::tempdir().unwrap();
    let plain = edited_fixture("gemma3", tmp.path(), |c| {
        c["layer_types"] = json!([
            "sliding_attention",
            "sliding_attention",
            "sliding_attention"
        ]);
    });
    assert_eq!(count(&warnings_of(&plain), "sliding-window"), 0);
    // Gemma 2's fixture already alternates as llama.cpp does.
    assert_eq!(count(&warnings_of(&fixture("gemma2")), "sliding-window"), 0);
}

#[test]
fn sliding_windows_llama_cpp_ignores_are_warnings() {
    for name in ["mistral-window", "qwen2-window"] {
        let w = warnings_of(&fixture(name));
        assert_eq!(count(&w, "sliding window of 8 tokens"), 1, "{name}: {w:?}");
    }
    for name in ["llama", "mistral", "qwen2", "qwen3", "phi3", "gpt2"] {
        let w = warnings_of(&fixture(name));
        assert!(w.is_empty(), "{name}: {w:?}");
    }
}

// ---------------------------------------------------------------- real tokenizer.json

/// A real Hugging Face tokenizer.json / tokenizer_config.json pair under
/// `.cache/hf-tokenizers/<name>/`, round tripped; None when absent.
fn real_round_trip(name: &str) -> Option<(tempfile::TempDir, GgufFile)> {
    let dir = cache().join("hf-tokenizers").join(name);
    let json_path = cached(dir.join("tokenizer.json"), name)?;
    let json: Json = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    let config_text = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap();
    let mut config: Json = serde_json::from_str(&config_text).unwrap();
    // The chat template is not what is tested here.
    if let Some(c) = config.as_object_mut() {
        c.remove("chat_template");
    }
    let tmp = tempfile::tempdir().unwrap();
    let folder = tiny_model_with(tmp.path(), &json, &config);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let file = round_trip(&folder, &out);
    Some((tmp, file))
}

#[test]
fn real_llama2_tokenizer_json_round_trips_as_sentencepiece() {
    if let Some((_dir, file)) = real_round_trip("llama2") {
        sentencepiece_keys(&file, true);
    }
}

#[test]
fn real_gemma3_tokenizer_json_round_trips_as_sentencepiece() {
    if let Some((_dir, file)) = real_round_trip("gemma3") {
        sentencepiece_keys(&file, false);
    }
}

#[test]
fn real_llama3_tokenizer_json_round_trips_as_llama_bpe() {
    if let Some((_dir, file)) = real_round_trip("llama3") {
        assert_eq!(string_key(&file, "tokenizer.ggml.pre"), "llama-bpe");
        // Neither its config nor its post-processor says: the key is left
        // out, as llama.cpp's converter does, and llama.cpp's default for
        // Llama 3 (add BOS) applies.
        assert_eq!(file.get_bool("tokenizer.ggml.add_bos_token").unwrap(), None);
        let vocab = GgufVocab::read(&file).unwrap();
        assert!(
            Tokenizer::from_gguf(&vocab, file.path())
                .unwrap()
                .add_bos_token
        );
    }
}

#[test]
fn real_qwen3_tokenizer_json_round_trips_as_qwen2() {
    if let Some((_dir, file)) = real_round_trip("qwen3") {
        assert_eq!(string_key(&file, "tokenizer.ggml.pre"), "qwen2");
        let vocab = GgufVocab::read(&file).unwrap();
        assert_eq!(
            vocab.padding_token_id,
            Some(151643),
            "pad_token <|endoftext|>"
        );
    }
}

// ---------------------------------------------------------------- llama.cpp itself

/// llama.cpp's `llama-completion` (scripts/build_llama_cpp.sh), or None
/// after saying the cross-check skips.
fn llama_completion() -> Option<PathBuf> {
    cached(
        cache().join("llama.cpp/bin/llama-completion"),
        "the llama.cpp cross-check",
    )
}

/// The prompt ids llama.cpp prints for `text` (`--verbose-prompt`: one
/// `<id> -> '<piece>'` line per token, after the count).
fn llama_cpp_ids(bin: &Path, gguf: &Path, text: &str) -> Vec<u32> {
    // llama.cpp logs from a thread of its own and sometimes exits before
    // the last lines are out: a few more tokens generated give it time,
    // and a run whose list came out short is run again.
    let mut last = String::new();
    for _ in 0..5 {
        let out = std::process::Command::new(bin)
            .arg("-m")
            .arg(gguf)
            .args(["-p", text])
            .args(["-n", "16", "--ignore-eos", "--verbose-prompt", "-no-cnv"])
            .args(["--no-warmup", "-c", "8192", "-t", "1", "--temp", "0"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        let count: Option<usize> = log
            .lines()
            .find_map(|l| l.split("number of tokens in prompt = ").nth(1))
            .and_then(|n| n.trim().parse().ok());
        let ids: Vec<u32> = log
            .lines()
            .filter_map(|l| {
                let rest = l.split_once(" I ")?.1.trim_start();
                let (id, _) = rest.split_once(" -> '")?;
                id.parse().ok()
            })
            .collect();
        if let Some(count) = count.filter(|&c| ids.len() >= c) {
            return ids[..count].to_vec();
        }
        last = format!("({}) {log}", out.status);
    }
    panic!("llama.cpp printed no whole prompt for {text:?}: {last}");
}

/// llama.cpp, given the exported file, tokenizes every text as the
/// folder's own tokenizer does (after the BOS it adds).
fn llama_cpp_agrees(folder: &Path) {
    let Some(bin) = llama_completion() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (report, loaded, back) = export(folder, tmp.path());
    let bos = back
        .tokenizer
        .bos_token_id()
        .filter(|_| back.tokenizer.add_bos_token);
    // One run of llama.cpp for all the texts: their concatenation is as
    // good a test, and a large vocabulary takes llama.cpp a while to load.
    let text = all_texts(&loaded.tokenizer).join("\n");
    let mut got = llama_cpp_ids(&bin, &report.path, &text);
    if let Some(bos) = bos {
        assert_eq!(got.first(), Some(&bos), "llama.cpp adds BOS");
        got.remove(0);
    }
    let want = loaded.tokenizer.encode(&text).unwrap();
    let at = want.iter().zip(&got).take_while(|(a, b)| a == b).count();
    assert_eq!(
        got,
        want,
        "llama.cpp differs from token {at} on (from there) {:?}",
        loaded
            .tokenizer
            .decode_with_special(&want[at.min(want.len())..])
            .unwrap()
    );
}

#[test]
fn llama_cpp_tokenizes_an_exported_byte_level_bpe_alike() {
    let tmp = tempfile::tempdir().unwrap();
    llama_cpp_agrees(&TinyModel::default().write(tmp.path()));
}

#[test]
fn llama_cpp_tokenizes_an_exported_sentencepiece_bpe_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let config = json!({"bos_token": "<s>", "eos_token": "</s>"});
    for prepend in [true, false] {
        let folder = tiny_model_with(
            &tmp.path().join(format!("{prepend}")),
            &tiny_sentencepiece(prepend),
            &config,
        );
        llama_cpp_agrees(&folder);
    }
}

#[test]
fn llama_cpp_tokenizes_exported_real_vocabularies_alike() {
    let sources = [
        (
            cache().join("llama-vocabs/ggml-vocab-llama-spm.gguf"),
            None,
            None,
        ),
        (cache().join("models/gemma-3-270m-q4_k_m.gguf"), None, None),
    ];
    for (source, pre, norm) in sources {
        let Some(source) = cached(source, "the llama.cpp cross-check") else {
            continue;
        };
        let tmp = tempfile::tempdir().unwrap();
        let (json, config, _) = tokenizer_json_of(&source, pre, norm);
        llama_cpp_agrees(&tiny_model_with(tmp.path(), &json, &config));
    }
    for name in ["qwen3", "llama3", "gemma3", "llama2"] {
        let dir = cache().join("hf-tokenizers").join(name);
        if !dir.join("tokenizer.json").is_file() {
            continue;
        }
        let json: Json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
                .unwrap();
        let mut config: Json = serde_json::from_str(
            &std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap(),
        )
        .unwrap();
        if let Some(c) = config.as_object_mut() {
            c.remove("chat_template");
        }
        let tmp = tempfile::tempdir().unwrap();
        llama_cpp_agrees(&tiny_model_with(tmp.path(), &json, &config));
    }
}
