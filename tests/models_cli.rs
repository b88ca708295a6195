//! `ft models …` and hub ids, run as the real binary: a Hugging Face cache
//! laid out as huggingface_hub writes it (blobs, snapshots of symlinks, refs)
//! with a tiny GPT-2 in it, used offline; quantizing and converting.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::max_abs_diff;
use finetune::mlx_rs::Array;
use finetune::model::{self, LoadOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn ft(args: &[&str], hf_home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(args)
        .env("HF_HOME", hf_home)
        .env_remove("HF_HUB_CACHE")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Puts the files of `src` into `hf_home` as the hub cache entry of `id`.
fn populate_cache(hf_home: &Path, id: &str, src: &Path, skip: &[&str]) {
    let repo = hf_home
        .join("hub")
        .join(format!("models--{}", id.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for (i, entry) in std::fs::read_dir(src).unwrap().enumerate() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "reference.safetensors" || skip.contains(&name.as_str()) {
            continue;
        }
        let blob = format!("blob{i:04}");
        std::fs::copy(entry.path(), repo.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join(&name)).unwrap();
    }
}

fn reference(name: &str) -> (Array, Array) {
    let mut r = Array::load_safetensors(fixture(name).join("reference.safetensors")).unwrap();
    (r.remove("input_ids").unwrap(), r.remove("logits").unwrap())
}

#[test]
fn a_cached_hub_model_is_listed_inspected_and_run_offline() {
    let home = tempfile::tempdir().unwrap();
    populate_cache(home.path(), "tiny-org/gpt2", &fixture("gpt2"), &[]);

    let out = ft(&["models", "list", "--json"], home.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "tiny-org/gpt2"),
        "{list}"
    );

    // `pull` of a complete cached model resolves it without the network.
    let out = ft(&["models", "pull", "tiny-org/gpt2"], home.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .trim()
            .ends_with("0123456789abcdef0123456789abcdef01234567"),
        "{}",
        stdout(&out)
    );

    let out = ft(&["models", "info", "tiny-org/gpt2", "--json"], home.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["architecture"], "gpt2");
    assert_eq!(info["layers"], 2);
    // wte 320×64 + wpe 128×64 + 2 blocks × (2 LN + c_attn + c_proj + c_fc + mlp.c_proj) + ln_f.
    let block = 2 * 128 + (64 * 192 + 192) + (64 * 64 + 64) + (64 * 256 + 256) + (256 * 64 + 64);
    assert_eq!(info["parameters"], 320 * 64 + 128 * 64 + 2 * block + 128);

    let out = ft(
        &[
            "generate",
            "tiny-org/gpt2",
            "--prompt",
            "The quick",
            "--max-tokens",
            "4",
        ],
        home.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // The library resolves the same id to the cached snapshot.
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let (ids, expected) = reference("gpt2");
    let mut loaded = model::load(Path::new("tiny-org/gpt2"), &LoadOptions::default()).unwrap();
    let got = loaded.model.forward(&ids, None).unwrap();
    assert!(max_abs_diff(&got, &expected) < 1e-4);
}

#[test]
fn offline_a_missing_or_incomplete_model_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = ft(&["models", "info", "nobody/nothing"], home.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("nobody/nothing")
            && err.contains("not in the Hugging Face cache")
            && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Weights missing from the snapshot: incomplete, so not used.
    populate_cache(
        home.path(),
        "tiny-org/partial",
        &fixture("gpt2"),
        &["model.safetensors"],
    );
    let out = ft(&["models", "info", "tiny-org/partial"], home.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not in the Hugging Face cache"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn quantize_writes_an_mlx_lm_style_folder_that_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("q8");
    let out = ft(
        &[
            "models",
            "quantize",
            fixture("llama").to_str().unwrap(),
            "--output",
            out_dir.to_str().unwrap(),
            "--bits",
            "8",
            "--group-size",
            "32",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(
        config["quantization"],
        serde_json::json!({"group_size": 32, "bits": 8})
    );

    let out = ft(
        &["models", "info", out_dir.to_str().unwrap(), "--json"],
        tmp.path(),
    );
    let info: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(info["quantization"]["bits"], 8);

    let (ids, expected) = reference("llama");
    let mut loaded = model::load(&out_dir, &LoadOptions::default()).unwrap();
    let got = loaded.model.forward(&ids, None).unwrap();
    let scale: f32 = expected.abs().unwrap().max(None).unwrap().item_exact();
    let diff = max_abs_diff(&got, &expected);
    assert!(
        diff < 0.05 * scale,
        "8-bit logits off by {diff} (scale {scale})"
    );

    // A bad bit width is a usage error.
    let out = ft(
        &["models", "quantize", "x", "--output", "y", "--bits", "5"],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn convert_turns_a_pytorch_bin_gpt2_into_safetensors_with_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("converted");
    let out = ft(
        &[
            "models",
            "convert",
            fixture("gpt2-bin").to_str().unwrap(),
            "--output",
            out_dir.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out_dir.join("model.safetensors").exists());
    let (ids, expected) = reference("gpt2");
    let mut loaded = model::load(&out_dir, &LoadOptions::default()).unwrap();
    assert!(max_abs_diff(&loaded.model.forward(&ids, None).unwrap(), &expected) < 1e-4);
}
