//! The newer Llama-family architectures against transformers: tiny random
//! Qwen3 (per-head q/k norms, explicit head_dim), Gemma 3 (sliding and global
//! layers with their own RoPE, `(1 + w)` norms, sandwich norms, scaled
//! embeddings, GELU gating), Gemma 2 (soft-capping), Mistral and Qwen2 with
//! windows shorter than the sequence — made by
//! `scripts/fixtures/make_parity.py`. Each is checked on a full forward pass,
//! token by token through the KV cache, packed beside another example, and
//! through LoRA, a fused Hugging Face folder and back.

mod common;

use std::path::{Path, PathBuf};

use common::max_abs_diff;
use finetune::lora;
use finetune::mlx_rs::{ops::indexing::IndexOp, Array};
use finetune::model::{self, LoadOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn reference(name: &str) -> (Array, Array) {
    let mut r = Array::load_safetensors(fixture(name).join("reference.safetensors")).unwrap();
    (r.remove("input_ids").unwrap(), r.remove("logits").unwrap())
}

/// transformers' logits within 1e-4 (float32 sums in another order).
const TOLERANCE: f32 = 1e-4;

fn load(name: &str) -> model::LoadedModel {
    model::load(&fixture(name), &LoadOptions::default()).unwrap()
}

/// Logits of a full pass within 1e-4 of transformers'.
fn full_pass_matches(name: &str) {
    let (ids, expected) = reference(name);
    let mut loaded = load(name);
    let got = loaded.model.forward(&ids, None).unwrap();
    assert_eq!(got.shape(), expected.shape());
    let diff = max_abs_diff(&got, &expected);
    eprintln!("{name}: max |Δ| = {diff:.2e}");
    assert!(diff <= TOLERANCE, "{name}: max |Δ| {diff}");
}

/// Decoding through the KV cache (a 3-token prompt, then one token at a
/// time, past every window) gives transformers' logits at every position.
fn cached_decoding_matches(name: &str) {
    let (ids, expected) = reference(name);
    let ids = ids.index((0..1, ..));
    let expected = expected.index((0..1, .., ..));
    let mut m = load(name).model;
    let mut cache = m.new_cache();
    let tol = TOLERANCE;
    let first = m.forward(&ids.index((.., ..3)), Some(&mut cache)).unwrap();
    assert!(max_abs_diff(&first, &expected.index((.., ..3, ..))) <= tol);
    for pos in 3..ids.shape()[1] {
        let step = m
            .forward(&ids.index((.., pos..pos + 1)), Some(&mut cache))
            .unwrap();
        let diff = max_abs_diff(&step, &expected.index((.., pos..pos + 1, ..)));
        assert!(diff <= tol, "{name}: position {pos}: max |Δ| {diff}");
    }
}

/// Two examples packed in one row compute what each computes alone.
fn packing_keeps_examples_apart(name: &str) {
    let (ids, _) = reference(name);
    let mut m = load(name).model;
    let (a, b) = (ids.index((0..1, ..14)), ids.index((1..2, ..10)));
    let alone_a = m.forward(&a, None).unwrap();
    let alone_b = m.forward(&b, None).unwrap();
    let packed = finetune::mlx_rs::ops::concatenate(&[a, b], 1).unwrap();
    let mut segments = vec![0i32; 14];
    segments.extend([1; 10]);
    let segments = Array::from_slice(&segments, &[1, 24]);
    let logits = m.forward_packed(&packed, &segments).unwrap();
    let tol = TOLERANCE;
    let (da, db) = (
        max_abs_diff(&logits.index((.., ..14, ..)), &alone_a),
        max_abs_diff(&logits.index((.., 14.., ..)), &alone_b),
    );
    assert!(
        da <= tol && db <= tol,
        "{name}: packed vs alone: {da}, {db}"
    );
}

/// LoRA on every projection: adapters saved and loaded back compute the
/// same logits; fused and written as a Hugging Face folder, the model loads
/// back computing them too.
fn lora_round_trips(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (ids, _) = reference(name);
    let mut loaded = load(name);
    let base = loaded.model.forward(&ids, None).unwrap();
    let config = common::apply_random_lora(&mut loaded.model);
    let adapted = loaded.model.forward(&ids, None).unwrap();
    assert!(max_abs_diff(&adapted, &base) > 1e-3);
    let adapters = tmp.path().join("adapters");
    lora::save_mlx_adapters(&loaded.model, &config, &adapters).unwrap();
    let mut fresh = load(name);
    lora::load_adapters(&mut fresh.model, &adapters).unwrap();
    let diff = max_abs_diff(&fresh.model.forward(&ids, None).unwrap(), &adapted);
    assert!(diff < 1e-5, "{name}: reloaded adapters: {diff}");

    finetune::export::fuse_adapters(&mut fresh).unwrap();
    let out = tmp.path().join("fused");
    finetune::export::write_hf_folder(&mut fresh, &out, 1 << 30).unwrap();
    let mut fused = model::load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(fused.model.model_type(), loaded.model.model_type());
    // Fusing adds B·A into each weight, so the sums round differently by
    // an amount that grows with the adapters' effect.
    let diff = max_abs_diff(&fused.model.forward(&ids, None).unwrap(), &adapted);
    let effect = max_abs_diff(&adapted, &base);
    eprintln!("{name}: fused |Δ| {diff:.2e}, the adapters moved logits by {effect:.2}");
    assert!(
        diff <= TOLERANCE.max(1e-4 * effect),
        "{name}: fused: {diff}"
    );
}

macro_rules! architecture_tests {
    ($($module:ident => $fixture:literal),* $(,)?) => {$(
        mod $module {
            #[test]
            fn full_pass_matches_transformers() {
                super::full_pass_matches($fixture);
            }
            #[test]
            fn kv_cache_decoding_matches_transformers() {
                super::cached_decoding_matches($fixture);
            }
            #[test]
            fn packed_examples_compute_what_they_do_alone() {
                super::packing_keeps_examples_apart($fixture);
            }
            #[test]
            fn lora_adapters_and_fused_folders_round_trip() {
                super::lora_round_trips($fixture);
            }
        }
    )*};
}

architecture_tests! {
    qwen3 => "qwen3",
    gemma3 => "gemma3",
    gemma2 => "gemma2",
    mistral_window => "mistral-window",
    qwen2_window => "qwen2-window",
    phi3 => "phi3",
}

#[test]
fn phi3_beyond_its_original_context_turns_with_the_long_factors() {
    // 48 tokens > original_max_position_embeddings (32): LongRoPE's long
    // factors for the whole pass, as transformers picks them.
    let mut r =
        Array::load_safetensors(fixture("phi3").join("reference_long.safetensors")).unwrap();
    let (ids, expected) = (r.remove("input_ids").unwrap(), r.remove("logits").unwrap());
    let mut m = load("phi3").model;
    let got = m.forward(&ids, None).unwrap();
    let diff = max_abs_diff(&got, &expected);
    eprintln!("phi3 (long): max |Δ| = {diff:.2e}");
    assert!(diff <= TOLERANCE, "max |Δ| {diff}");
    // The short pass differs from the long one's first 24 positions.
    let (short_ids, short) = reference("phi3");
    assert!(max_abs_diff(&m.forward(&short_ids, None).unwrap(), &short) <= TOLERANCE);
    assert!(max_abs_diff(&got.index((.., ..24, ..)), &short) > 1e-2);
}

#[test]
fn phi3_adapters_target_the_fused_projections_as_peft_names_them() {
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

/// The same checkpoint with its config.json in transformers 4's spelling
/// (as hub checkpoints ship it) computes the same logits.
fn config_v4_loads_the_same_model(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
    }
    std::fs::copy(
        fixture(name).join("config.v4.json"),
        tmp.path().join("config.json"),
    )
    .unwrap();
    let (ids, expected) = reference(name);
    let mut m = model::load(tmp.path(), &LoadOptions::default())
        .unwrap()
        .model;
    let diff = max_abs_diff(&m.forward(&ids, None).unwrap(), &expected);
    assert!(diff <= TOLERANCE, "{name}: max |Δ| {diff}");
}

#[test]
fn configs_in_transformers_4_spelling_load_the_same_models() {
    for name in ["gemma3", "gemma2", "phi3"] {
        config_v4_loads_the_same_model(name);
    }
}
