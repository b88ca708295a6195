//! Parity with PyTorch + transformers: tiny random GPT-2, Llama (llama3 RoPE
//! scaling, untied head), Mistral and Qwen2 (biases, tied head) checkpoints
//! made by `scripts/fixtures/make_parity.py`, whose logits transformers
//! computed. Also GPT-2 read from PyTorch's own `.bin` format, and broken
//! `.bin` files.

mod common;

use std::path::{Path, PathBuf};

use common::max_abs_diff;
use finetune::lora::{self, LoraConfig};
use finetune::mlx_rs::{ops::indexing::IndexOp, Array};
use finetune::model::{self, LoadOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

/// (input ids, transformers' logits) stored beside a fixture model.
fn reference(name: &str) -> (Array, Array) {
    let mut r = Array::load_safetensors(fixture(name).join("reference.safetensors")).unwrap();
    (r.remove("input_ids").unwrap(), r.remove("logits").unwrap())
}

fn check_parity(folder: &Path, reference_of: &str) -> f32 {
    let (ids, expected) = reference(reference_of);
    let mut loaded = model::load(folder, &LoadOptions::default()).unwrap();
    let got = loaded.model.forward(&ids, None).unwrap();
    assert_eq!(got.shape(), expected.shape());
    let diff = max_abs_diff(&got, &expected);
    eprintln!("{}: max |Δ| = {diff:.2e}", folder.display());
    assert!(diff <= 1e-4, "{}: max |Δ| {diff}", folder.display());
    diff
}

#[test]
fn gpt2_matches_transformers() {
    check_parity(&fixture("gpt2"), "gpt2");
}

#[test]
fn llama_with_llama3_rope_scaling_matches_transformers() {
    check_parity(&fixture("llama"), "llama");
}

#[test]
fn mistral_matches_transformers() {
    check_parity(&fixture("mistral"), "mistral");
}

#[test]
fn qwen2_matches_transformers() {
    check_parity(&fixture("qwen2"), "qwen2");
}

#[test]
fn gpt2_from_a_pytorch_bin_matches_transformers() {
    let folder = fixture("gpt2-bin");
    assert!(folder.join("pytorch_model.bin").exists());
    assert!(!folder.join("model.safetensors").exists());
    check_parity(&folder, "gpt2");
}

#[test]
fn gpt2_kv_cache_decoding_matches_a_full_forward_pass() {
    let (ids, _) = reference("gpt2");
    let ids = ids.index((0..1, ..));
    let mut m = model::load(&fixture("gpt2"), &LoadOptions::default())
        .unwrap()
        .model;
    let full = m.forward(&ids, None).unwrap();
    let mut cache = m.new_cache();
    m.forward(&ids.index((.., ..5)), Some(&mut cache)).unwrap();
    for pos in 5..ids.shape()[1] {
        let step = m
            .forward(&ids.index((.., pos..pos + 1)), Some(&mut cache))
            .unwrap();
        let expected = full.index((.., pos..pos + 1, ..));
        assert!(max_abs_diff(&step, &expected) < 1e-4, "position {pos}");
    }
}

#[test]
fn gpt2_lora_adapters_round_trip_and_fuse_into_a_hugging_face_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (ids, _) = reference("gpt2");
    let mut loaded = model::load(&fixture("gpt2"), &LoadOptions::default()).unwrap();
    let base = loaded.model.forward(&ids, None).unwrap();
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets: vec!["c_attn".into(), "mlp.c_proj".into()],
        ..Default::default()
    };
    let trainable = lora::apply(&mut loaded.model, &config).unwrap();
    // 2 blocks × (c_attn 64→192 + mlp.c_proj 256→64), rank 4.
    assert_eq!(trainable, 2 * (4 * (64 + 192) + 4 * (256 + 64)));
    // B starts at zero: the adapted model computes what the base did.
    assert!(max_abs_diff(&loaded.model.forward(&ids, None).unwrap(), &base) < 1e-6);

    // Give B values, save, reload into a fresh model: same logits.
    for projection in loaded.model.projections_mut() {
        if let Some(b) = projection.lora_b.value.as_mut() {
            *b =
                finetune::mlx_rs::random::normal::<f32>(b.shape(), None, Some(0.05), None).unwrap();
        }
    }
    let adapted = loaded.model.forward(&ids, None).unwrap();
    assert!(max_abs_diff(&adapted, &base) > 1e-3);
    let adapters = tmp.path().join("adapters");
    lora::save_mlx_adapters(&loaded.model, &config, &adapters).unwrap();
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapters.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        saved["lora_parameters"]["keys"],
        serde_json::json!(["attn.c_attn", "mlp.c_proj"])
    );
    let mut fresh = model::load(&fixture("gpt2"), &LoadOptions::default()).unwrap();
    lora::load_adapters(&mut fresh.model, &adapters).unwrap();
    assert!(max_abs_diff(&fresh.model.forward(&ids, None).unwrap(), &adapted) < 1e-5);

    // Fused and written as a Hugging Face folder (Conv1D layout restored),
    // it loads back computing the adapted logits.
    finetune::export::fuse_adapters(&mut fresh).unwrap();
    let out = tmp.path().join("fused");
    finetune::export::write_hf_folder(&mut fresh, &out, 1 << 30).unwrap();
    let mut fused = model::load(&out, &LoadOptions::default()).unwrap();
    assert!(max_abs_diff(&fused.model.forward(&ids, None).unwrap(), &adapted) < 1e-4);
}

#[test]
fn a_llama_target_on_gpt2_is_a_clear_error() {
    let mut loaded = model::load(&fixture("gpt2"), &LoadOptions::default()).unwrap();
    let config = LoraConfig {
        targets: vec!["q_proj".into()],
        ..Default::default()
    };
    let err = lora::apply(&mut loaded.model, &config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`q_proj`") && err.contains("gpt2") && err.contains("attn.c_attn"),
        "{err}"
    );
}

fn copy_fixture(name: &str, to: &Path) -> PathBuf {
    let dst = to.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    dst
}

fn load_error(dir: &Path) -> String {
    match model::load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_pytorch_bin_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("gpt2-bin", tmp.path());
    let bin = dir.join("pytorch_model.bin");
    let bytes = std::fs::read(&bin).unwrap();
    std::fs::write(&bin, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("pytorch_model.bin") && err.contains("not a readable PyTorch checkpoint"),
        "{err}"
    );
}

#[test]
fn a_pickle_that_is_not_a_zip_names_the_file_and_the_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("gpt2-bin", tmp.path());
    // The pre-1.6 format: a bare pickle stream.
    std::fs::write(dir.join("pytorch_model.bin"), b"\x80\x02}q\x00.").unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("pytorch_model.bin") && err.contains("zip format"),
        "{err}"
    );
}

#[test]
fn a_folder_without_weights_says_what_it_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_fixture("gpt2-bin", tmp.path());
    std::fs::remove_file(dir.join("pytorch_model.bin")).unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("no weights") && err.contains("pytorch_model.bin"),
        "{err}"
    );
}
