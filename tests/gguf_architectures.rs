//! Every architecture FineTune runs, loaded from a GGUF that llama.cpp's own
//! converter wrote: the tiny random parity fixtures (tests/fixtures/parity)
//! converted by `convert_hf_to_gguf.py --outtype f32` of the llama.cpp tree
//! in the llama-cpp-python 0.3.36 sdist, into tests/fixtures/gguf/architectures
//! (`make gguf-fixtures`: scripts/fixtures/make_gguf_architectures.py, which
//! documents its tokenizer workarounds). Each GGUF's full-pass logits must be
//! transformers' within 1e-4, and decoding through the KV cache too.
//!
//! Where llama.cpp's format cannot carry the fixture's configuration
//! (Gemma's query_pre_attn_scalar ≠ head_dim, Gemma 3's layer pattern,
//! Mistral's and Qwen2's sliding windows), the reference is transformers on
//! the same weights under the configuration the GGUF carries
//! (`<name>.reference.safetensors`), and the test also checks that the
//! fixture's own reference differs — the GGUF really does describe another
//! model, and the loader does not get there by ignoring what it reads.

mod common;

use std::path::{Path, PathBuf};

use common::max_abs_diff;
use finetune::mlx_rs::{ops::indexing::IndexOp, Array};
use finetune::model::{self, LoadOptions};

/// transformers' logits within 1e-4 (float32 sums in another order).
const TOLERANCE: f32 = 1e-4;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gguf(name: &str) -> PathBuf {
    root()
        .join("tests/fixtures/gguf/architectures")
        .join(format!("{name}.gguf"))
}

fn load_reference(path: &Path) -> (Array, Array) {
    let mut r = Array::load_safetensors(path).unwrap();
    (r.remove("input_ids").unwrap(), r.remove("logits").unwrap())
}

/// The parity fixture's own reference (transformers on its config.json).
fn fixture_reference(name: &str) -> (Array, Array) {
    load_reference(
        &root()
            .join("tests/fixtures/parity")
            .join(name)
            .join("reference.safetensors"),
    )
}

/// The reference for the GGUF: the fixture's, or the one recomputed under
/// the configuration the GGUF carries when that differs.
fn reference(name: &str) -> (Array, Array) {
    let own = root()
        .join("tests/fixtures/gguf/architectures")
        .join(format!("{name}.reference.safetensors"));
    if own.exists() {
        load_reference(&own)
    } else {
        fixture_reference(name)
    }
}

fn load(name: &str) -> model::LoadedModel {
    let path = gguf(name);
    assert!(path.exists(), "{} is missing", path.display());
    model::load(&path, &LoadOptions::default()).unwrap()
}

fn full_pass_matches(name: &str, model_type: &str) {
    let (ids, expected) = reference(name);
    let mut loaded = load(name);
    assert_eq!(loaded.model.model_type(), model_type);
    let got = loaded.model.forward(&ids, None).unwrap();
    assert_eq!(got.shape(), expected.shape(), "{name}");
    let diff = max_abs_diff(&got, &expected);
    eprintln!("{name}: GGUF max |Δ| = {diff:.2e}");
    assert!(diff <= TOLERANCE, "{name}: max |Δ| {diff}");
}

/// A 3-token prompt, then one token at a time (past every window).
fn cached_decoding_matches(name: &str) {
    let (ids, expected) = reference(name);
    let ids = ids.index((0..1, ..));
    let expected = expected.index((0..1, .., ..));
    let mut m = load(name).model;
    let mut cache = m.new_cache();
    let first = m.forward(&ids.index((.., ..3)), Some(&mut cache)).unwrap();
    let mut worst = max_abs_diff(&first, &expected.index((.., ..3, ..)));
    for pos in 3..ids.shape()[1] {
        let step = m
            .forward(&ids.index((.., pos..pos + 1)), Some(&mut cache))
            .unwrap();
        let diff = max_abs_diff(&step, &expected.index((.., pos..pos + 1, ..)));
        worst = worst.max(diff);
        assert!(diff <= TOLERANCE, "{name}: position {pos}: max |Δ| {diff}");
    }
    eprintln!("{name}: GGUF through the KV cache, max |Δ| = {worst:.2e}");
}

/// The GGUF describes another model than the fixture's config.json: the
/// fixture's own reference is not what it computes (beyond `from`, the first
/// position where the dropped setting matters).
fn fixture_reference_differs(name: &str, from: i32) {
    let (ids, expected) = fixture_reference(name);
    let got = load(name).model.forward(&ids, None).unwrap();
    let after = max_abs_diff(
        &got.index((.., from.., ..)),
        &expected.index((.., from.., ..)),
    );
    eprintln!("{name}: vs the fixture's own reference from position {from}: max |Δ| = {after:.2e}");
    assert!(after > 1e-2, "{name}: {after}");
    if from > 0 {
        let before = max_abs_diff(
            &got.index((.., ..from, ..)),
            &expected.index((.., ..from, ..)),
        );
        assert!(before <= TOLERANCE, "{name}: before {from}: {before}");
    }
}

macro_rules! gguf_tests {
    ($($module:ident => $fixture:literal, $model_type:literal;)*) => {$(
        mod $module {
            #[test]
            fn full_pass_matches_transformers() {
                super::full_pass_matches($fixture, $model_type);
            }
            #[test]
            fn kv_cache_decoding_matches_transformers() {
                super::cached_decoding_matches($fixture);
            }
        }
    )*};
}

gguf_tests! {
    gpt2 => "gpt2", "gpt2";
    llama => "llama", "llama";
    mistral => "mistral", "llama";
    qwen2 => "qwen2", "qwen2";
    qwen3 => "qwen3", "qwen3";
    gemma2 => "gemma2", "gemma2";
    gemma3 => "gemma3", "gemma3_text";
    phi3 => "phi3", "phi3";
    mistral_window => "mistral-window", "llama";
    qwen2_window => "qwen2-window", "qwen2";
}

#[test]
fn gguf_files_are_small() {
    for entry in std::fs::read_dir(root().join("tests/fixtures/gguf/architectures")).unwrap() {
        let entry = entry.unwrap();
        let size = entry.metadata().unwrap().len();
        assert!(size < 1 << 20, "{:?}: {size} bytes", entry.file_name());
    }
}

/// Phi-3's LongRoPE from the GGUF's factor tensors: 48 tokens, beyond the
/// original 32, turn with the long factors (transformers' rule), and the
/// short and long passes differ.
#[test]
fn phi3_gguf_beyond_its_original_context_turns_with_the_long_factors() {
    let (ids, expected) =
        load_reference(&root().join("tests/fixtures/parity/phi3/reference_long.safetensors"));
    let mut m = load("phi3").model;
    let got = m.forward(&ids, None).unwrap();
    let diff = max_abs_diff(&got, &expected);
    eprintln!("phi3 (long): GGUF max |Δ| = {diff:.2e}");
    assert!(diff <= TOLERANCE, "max |Δ| {diff}");
    let (_, short) = reference("phi3");
    assert!(max_abs_diff(&got.index((.., ..24, ..)), &short) > 1e-2);
}

#[test]
fn phi3_gguf_has_the_fused_projections() {
    let m = load("phi3").model;
    assert_eq!(
        m.lora_targets(),
        &[
            "self_attn.qkv_proj",
            "self_attn.o_proj",
            "mlp.gate_up_proj",
            "mlp.down_proj"
        ]
    );
}

#[test]
fn gemma_scalars_the_gguf_cannot_carry_change_the_logits() {
    // query_pre_attn_scalar (48 / 64 in the fixtures; llama.cpp uses head_dim)
    fixture_reference_differs("gemma2", 0);
    fixture_reference_differs("gemma3", 0);
}

#[test]
fn windows_the_gguf_cannot_carry_matter_only_past_the_window() {
    // sliding_window 8: the first 8 positions see the same keys either way.
    fixture_reference_differs("mistral-window", 8);
    fixture_reference_differs("qwen2-window", 8);
}

/// The windowless fixtures' GGUFs compute exactly their own references (no
/// recomputed one stands in for them).
#[test]
fn faithful_conversions_use_the_fixture_reference() {
    for name in ["gpt2", "llama", "mistral", "qwen2", "qwen3", "phi3"] {
        let own = root()
            .join("tests/fixtures/gguf/architectures")
            .join(format!("{name}.reference.safetensors"));
        assert!(!own.exists(), "{name}");
    }
}
