//! GGUF vocabularies rebuilt as `tokenizers` tokenizers give llama.cpp's own
//! ids: every case of llama.cpp's tokenizer test vectors
//! (`models/ggml-vocab-*.gguf` with `.inp` / `.out`, fetched by
//! `scripts/fetch_llama_vocabs.sh` into `.cache/llama-vocabs/`), tokenized as
//! llama.cpp's `test-tokenizer-0` does (no BOS/EOS added, special tokens in
//! the text not parsed). Vocabularies FineTune does not accept must say so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use finetune::gguf::GgufFile;
use finetune::tokenizer::{GgufVocab, Tokenizer};

fn cache() -> PathBuf {
    finetune::paths::cache_dir()
}

fn vocab_dir() -> PathBuf {
    let dir = cache().join("llama-vocabs");
    assert!(
        dir.join("ggml-vocab-llama-spm.gguf").is_file(),
        "llama.cpp's tokenizer test vectors are missing from {}: run scripts/fetch_llama_vocabs.sh",
        dir.display()
    );
    dir
}

fn load(path: &Path) -> finetune::error::Result<Tokenizer> {
    let file = GgufFile::open(path)?;
    let vocab = GgufVocab::read(&file)?;
    Tokenizer::from_gguf(&vocab, path)
}

/// The cases of `<vocab>.gguf.inp` / `.out`, keyed by input as llama.cpp's
/// test keys them (a repeated input counts once).
fn cases(gguf: &Path) -> BTreeMap<String, Vec<u32>> {
    let read = |ext: &str| {
        let p = PathBuf::from(format!("{}.{ext}", gguf.display()));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    // Inputs end at each separator line; text after the last one, if any,
    // is one more input.
    let raw = read("inp");
    let mut inputs: Vec<String> = raw
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_string)
        .collect();
    if raw.ends_with("\n__ggml_vocab_test__\n") {
        inputs.pop();
    }
    let outputs: Vec<Vec<u32>> = read("out")
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{}: inputs and outputs differ in number",
        gguf.display()
    );
    inputs.into_iter().zip(outputs).collect()
}

/// Runs every case of vocabulary `name`: encoding gives llama.cpp's ids and
/// decoding them gives the text back.
fn check(name: &str, expected_cases: usize) {
    let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let start = Instant::now();
    let mut tokenizer = load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let built = start.elapsed();
    tokenizer.set_parse_special(false);
    let cases = cases(&path);
    let mut failures = Vec::new();
    for (text, want) in &cases {
        let got = tokenizer.encode(text).unwrap();
        if &got != want {
            failures.push(format!("  {text:?}\n    want {want:?}\n    got  {got:?}"));
        }
        // Decoding gives the text back.
        let back = tokenizer.decode(want).unwrap();
        if &back != text {
            failures.push(format!("  {text:?}\n    decodes to {back:?}"));
        }
    }
    eprintln!(
        "{name}: {}/{} cases pass (built in {:.2} s)",
        cases.len() - failures.len(),
        cases.len(),
        built.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ from llama.cpp:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(cases.len(), expected_cases, "{name}: number of cases");
}

macro_rules! vocab_tests {
    ($($test:ident: $name:literal, $cases:literal;)*) => {$(
        #[test]
        fn $test() {
            check($name, $cases);
        }
    )*};
}

// Every vocabulary of llama.cpp's test vectors that FineTune accepts, with
// its number of distinct cases.
vocab_tests! {
    llama_spm: "llama-spm", 46;
    phi_3: "phi-3", 46;
    gemma_4: "gemma-4", 46;
    llama_bpe: "llama-bpe", 46;
    qwen2: "qwen2", 46;
    qwen35: "qwen35", 50;
    gpt_2: "gpt-2", 46;
    deepseek_llm: "deepseek-llm", 46;
    deepseek_coder: "deepseek-coder", 46;
    falcon: "falcon", 46;
    starcoder: "starcoder", 46;
    refact: "refact", 46;
    command_r: "command-r", 46;
    mpt: "mpt", 46;
}

/// Vocabularies of other tokenizer models are refused with an error that
/// names the model and lists the supported ones.
#[test]
fn unsupported_vocabularies_are_refused_by_name() {
    for (name, model) in [("bert-bge", "bert"), ("nomic-bert-moe", "t5")] {
        let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
        let err = match load(&path) {
            Ok(_) => panic!("{name}: a `{model}` vocabulary was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("`{model}`")) && err.contains("supported: llama, gpt2"),
            "{name}: {err}"
        );
    }
}

/// The vocabularies llama.cpp ships without vectors (Aquila and GPT-NeoX:
/// BPE with no `pre`, so `default`; Baichuan: SentencePiece) build and
/// give text back.
#[test]
fn vocabularies_without_vectors_build_and_round_trip() {
    for name in ["aquila", "gpt-neox", "baichuan"] {
        let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
        let tokenizer = load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = "Hello world! 1234 don't\n\tcafé 日本語";
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text, "{name}: {ids:?}");
    }
}

/// An unknown pre-tokenizer is an error naming it and listing the known ones.
#[test]
fn unknown_pre_tokenizer_is_refused_by_name() {
    let path = vocab_dir().join("ggml-vocab-gpt-2.gguf");
    let file = GgufFile::open(&path).unwrap();
    let mut vocab = GgufVocab::read(&file).unwrap();
    vocab.pre = Some("no-such-pre".into());
    let err = Tokenizer::from_gguf(&vocab, &path)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("`no-such-pre`"), "{err}");
    assert!(
        err.contains("llama-bpe") && err.contains("qwen2") && err.contains("smollm"),
        "{err}"
    );
}

/// SmolLM2 (the default model, `pre = smollm`), when present: the ids the
/// GGUF tokenizer gave before pre-tokenizers were rebuilt from llama.cpp.
#[test]
fn smollm2_default_model_is_unchanged() {
    let path = cache().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let tokenizer = load(&path).unwrap();
    for (text, want) in SMOLLM2_CASES {
        assert_eq!(tokenizer.encode(text).unwrap(), want.to_vec(), "{text:?}");
        assert_eq!(
            tokenizer.decode(want).unwrap(),
            text.replace("<|im_start|>", "").replace("<|im_end|>", "")
        );
    }
    assert_eq!(tokenizer.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(tokenizer.eos_token.as_deref(), Some("<|im_end|>"));
    assert!(!tokenizer.add_bos_token);
}

const SMOLLM2_CASES: &[(&str, &[u32])] = &[
    ("Hello world!", &[19556, 905, 17]),
    (
        "What is the capital of France?",
        &[1780, 314, 260, 3575, 282, 4649, 47],
    ),
    (
        "<|im_start|>user\nHi!<|im_end|>\n",
        &[1, 4093, 198, 26843, 17, 2, 198],
    ),
    (
        "I'm 42 — naïve café",
        &[57, 5248, 216, 36, 34, 1841, 15486, 46494, 37366],
    ),
    (
        "  indented\n\tcode()",
        &[216, 641, 6574, 198, 197, 4635, 1000],
    ),
];

/// Gemma 3 (SentencePiece, 262,144 tokens), when present: it builds in
/// reasonable time and encodes as Hugging Face's Gemma tokenizer does
/// (`transformers` 5.24 loading the same GGUF with
/// `AutoTokenizer.from_pretrained(dir, gguf_file=...)`, `add_special_tokens=False`).
#[test]
fn gemma3_matches_hugging_face() {
    let path = cache().join("models/gemma-3-270m-q4_k_m.gguf");
    if !path.is_file() {
        eprintln!("skipped: {} is absent", path.display());
        return;
    }
    let start = Instant::now();
    let tokenizer = load(&path).unwrap();
    let built = start.elapsed();
    eprintln!("gemma-3: tokenizer built in {:.2} s", built.as_secs_f64());
    assert!(
        built.as_secs() < 60,
        "building Gemma 3's tokenizer took {built:?}"
    );
    for (text, want) in GEMMA3_CASES {
        assert_eq!(tokenizer.encode(text).unwrap(), want.to_vec(), "{text:?}");
        assert_eq!(&tokenizer.decode_with_special(want).unwrap(), text);
    }
    assert_eq!(tokenizer.bos_token.as_deref(), Some("<bos>"));
    assert_eq!(tokenizer.eos_token.as_deref(), Some("<eos>"));
    assert!(tokenizer.add_bos_token);
}

const GEMMA3_CASES: &[(&str, &[u32])] = &[
    ("Hello world!", &[9259, 1902, 236888]),
    (" Hello, world!", &[26352, 236764, 1902, 236888]),
    (
        "The quick brown fox jumps over the lazy dog.",
        &[
            818, 3823, 8864, 37423, 38167, 1024, 506, 31770, 4799, 236761,
        ],
    ),
    (
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
        &[
            105, 2364, 107, 3689, 563, 236743, 236778, 236862, 236778, 236881, 106, 107, 105, 4368,
            107,
        ],
    ),
    (
        "  two  spaces\tand tab\n\nnewlines",
        &[138, 13498, 138, 35220, 255968, 624, 6937, 108, 208697],
    ),
    (
        "Ünïcödé 日本語 🦙 emoji",
        &[
            238194, 236749, 238527, 236755, 55515, 236859, 33375, 238582, 236743, 478, 397, 404,
            391, 64334,
        ],
    ),
    (
        "x = [1, 2, 3]; print(x[::-1])",
        &[
            236781, 578, 870, 236770, 236764, 236743, 236778, 236764, 236743, 236800, 2312, 1887,
            236769, 236781, 186487, 236770, 2812,
        ],
    ),
    (
        "3333333 12345",
        &[
            236800, 236800, 236800, 236800, 236800, 236800, 236800, 236743, 236770, 236778, 236800,
            236812, 236810,
        ],
    ),
];
