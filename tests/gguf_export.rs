//! GGUF export against llama.cpp's own converter: each tiny parity fixture
//! (tests/fixtures/parity/<name>) exported as F32 GGUF by FineTune holds
//! the tensors (names, dims, bits) and hyper-parameters that llama.cpp's
//! `convert_hf_to_gguf.py` wrote for the same folder
//! (tests/fixtures/gguf/architectures/<name>.gguf, see
//! scripts/fixtures/make_gguf_architectures.py), and loads back computing
//! transformers' logits; quantized exports load back within their
//! quantization's error; the tokenizer written gives the same ids.

mod common;

use std::path::{Path, PathBuf};

use common::max_abs_diff;
use finetune::export::gguf::write_gguf;
use finetune::gguf::mix::FileType;
use finetune::gguf::{GgufFile, Value};
use finetune::mlx_rs::Array;
use finetune::model::{self, LoadOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn converted(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/architectures")
        .join(format!("{name}.gguf"))
}

fn export(name: &str, file_type: FileType, dir: &Path) -> PathBuf {
    let loaded = model::load(&fixture(name), &LoadOptions::default()).unwrap();
    let path = dir.join(format!("{name}-{}.gguf", file_type.name()));
    let report = write_gguf(&loaded, &path, file_type, name).unwrap();
    assert_eq!(report.path, path);
    assert_eq!(report.bytes, std::fs::metadata(&path).unwrap().len());
    path
}

/// Keys whose values are the converter's own bookkeeping, not the model.
const BOOKKEEPING: &[&str] = &["general.name", "general.size_label", "general.type"];

fn same_as_llama_cpp(name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let ours = GgufFile::open(&export(name, FileType::F32, tmp.path())).unwrap();
    let theirs = GgufFile::open(&converted(name)).unwrap();
    for key in theirs.keys() {
        if BOOKKEEPING.contains(&key) || key.starts_with("tokenizer.ggml.pre") {
            continue;
        }
        let (a, b) = (ours.value(key), theirs.value(key));
        let same = match (a, b) {
            (Some(Value::F32(x)), Some(Value::F32(y))) => (x - y).abs() <= 1e-6 * y.abs(),
            _ => a == b,
        };
        assert!(same, "{name}: `{key}`: ours {a:?}, llama.cpp's {b:?}");
    }
    let mut our_names: Vec<&str> = ours.tensors().iter().map(|t| t.name.as_str()).collect();
    let mut their_names: Vec<&str> = theirs.tensors().iter().map(|t| t.name.as_str()).collect();
    our_names.sort();
    their_names.sort();
    assert_eq!(our_names, their_names, "{name}: tensor names");
    for t in theirs.tensors() {
        let o = ours.tensor(&t.name).unwrap();
        assert_eq!(o.dims, t.dims, "{name}: {} dims", t.name);
        let (a, b) = (ours.dequantize(o).unwrap(), theirs.dequantize(t).unwrap());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        // The same float32 weights; llama.cpp's rope factors are computed in
        // float64 then rounded, ours in float32.
        assert!(worst <= 1e-6, "{name}: {}: max |Δ| {worst}", t.name);
    }
}

/// transformers' logits for what a GGUF can say of the model: GGUF has no
/// key for some settings (Gemma's query_pre_attn_scalar, Gemma 3's layer
/// pattern, Llama/Qwen2 windows), so for those fixtures the reference is
/// transformers' under the settings llama.cpp reads
/// (scripts/fixtures/make_gguf_architectures.py).
fn reference(name: &str) -> (Array, Array) {
    let gguf_reference = converted(name).with_extension("reference.safetensors");
    let path = if gguf_reference.exists() {
        gguf_reference
    } else {
        fixture(name).join("reference.safetensors")
    };
    let mut r = Array::load_safetensors(path).unwrap();
    (r.remove("input_ids").unwrap(), r.remove("logits").unwrap())
}

/// The export loads back through FineTune's GGUF reader and computes
/// transformers' logits: F32 within 1e-4 absolute; a quantized file within
/// `relative` of the logits' largest magnitude (random tiny models, every
/// tensor quantized, embeddings and head included: Q8_0 measured 2–4 %,
/// Q4_K_M about 30 %).
fn loads_back(name: &str, file_type: FileType, relative: f32) {
    let tmp = tempfile::tempdir().unwrap();
    let path = export(name, file_type, tmp.path());
    let (ids, expected) = reference(name);
    let mut loaded = model::load(&path, &LoadOptions::default()).unwrap();
    let got = loaded.model.forward(&ids, None).unwrap();
    let diff = max_abs_diff(&got, &expected);
    let scale: f32 = expected.abs().unwrap().max(None).unwrap().item_exact();
    let tolerance = if file_type == FileType::F32 {
        1e-4
    } else {
        relative * scale
    };
    eprintln!(
        "{name} {}: max |Δ| = {diff:.2e} (largest logit {scale:.2})",
        file_type.name()
    );
    assert!(
        diff <= tolerance,
        "{name} {}: max |Δ| {diff}",
        file_type.name()
    );
}

macro_rules! export_tests {
    ($($module:ident => $fixture:literal),* $(,)?) => {$(
        mod $module {
            use finetune::gguf::mix::FileType;
            #[test]
            fn f32_export_is_what_llama_cpps_converter_writes() {
                super::same_as_llama_cpp($fixture);
            }
            #[test]
            fn f32_export_loads_back_with_transformers_logits() {
                super::loads_back($fixture, FileType::F32, 0.0);
            }
            #[test]
            fn q8_0_export_loads_back_close() {
                // Gemma 2's fixture is built sharp (raw attention scores
                // 22.5 under a cap of 5): 8-bit weights move it most (19 %).
                let relative = if $fixture == "gemma2" { 0.2 } else { 0.06 };
                super::loads_back($fixture, FileType::Q8_0, relative);
            }
        }
    )*};
}

export_tests! {
    llama => "llama",
    mistral => "mistral",
    qwen2 => "qwen2",
    qwen3 => "qwen3",
    gemma2 => "gemma2",
    gemma3 => "gemma3",
    phi3 => "phi3",
    gpt2 => "gpt2",
}

#[test]
fn the_tokenizer_written_gives_the_same_ids_on_a_multilingual_text() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "Grüße aus Köln! 東京は晴れ。 Привет, мир — it's 12:30, isn't it? 🤖 fn x() {}";
    for name in ["llama", "qwen2", "gpt2"] {
        let hf = model::load(&fixture(name), &LoadOptions::default()).unwrap();
        let path = export(name, FileType::F16, tmp.path());
        let back = model::load(&path, &LoadOptions::default()).unwrap();
        assert_eq!(
            back.tokenizer.encode(text).unwrap(),
            hf.tokenizer.encode(text).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_k_quant_mix_follows_llama_quantize_and_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let path = export("qwen3", FileType::Q4_K_M, tmp.path());
    let file = GgufFile::open(&path).unwrap();
    // Rows of 64 are not a multiple of 256: llama-quantize falls back from
    // Q4_K / Q6_K to Q5_0 / Q8_0 per tensor; norms stay F32.
    for t in file.tensors() {
        let ty = t.ggml_type.name();
        if t.dims.len() == 1 {
            assert_eq!(ty, "F32", "{}", t.name);
        } else {
            assert!(
                ["Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q6_K"].contains(&ty),
                "{} {ty}",
                t.name
            );
        }
    }
    loads_back("qwen3", FileType::Q4_K_M, 0.45);
}

#[test]
fn an_existing_file_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("mine.gguf");
    std::fs::write(&path, b"keep").unwrap();
    let loaded = model::load(&fixture("qwen3"), &LoadOptions::default()).unwrap();
    assert!(write_gguf(&loaded, &path, FileType::F16, "x").is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"keep");
}

/// The LoRA GGUF, applied as llama.cpp applies it (W + alpha/r · B·A, in
/// the file's own layouts), gives the fused export's weights: names,
/// transposes, q/k row permutation and scale all agree.
#[test]
fn a_lora_gguf_over_the_base_gguf_equals_the_fused_export() {
    use finetune::lora;
    for name in ["llama", "qwen3", "phi3", "gpt2"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut loaded = model::load(&fixture(name), &LoadOptions::default()).unwrap();
        let config = common::apply_random_lora(&mut loaded.model);
        let adapters = tmp.path().join("adapters");
        lora::save_mlx_adapters(&loaded.model, &config, &adapters).unwrap();

        let base_path = tmp.path().join("base.gguf");
        let base = model::load(&fixture(name), &LoadOptions::default()).unwrap();
        write_gguf(&base, &base_path, FileType::F32, name).unwrap();
        let mut for_lora = model::load(&fixture(name), &LoadOptions::default()).unwrap();
        let lora_path = tmp.path().join("adapter.gguf");
        let report = finetune::export::gguf_lora::write_gguf_lora(
            &mut for_lora,
            &adapters,
            &lora_path,
            name,
        )
        .unwrap();
        assert!(report.projections > 0);
        finetune::export::fuse_adapters(&mut for_lora).unwrap();
        let fused_path = tmp.path().join("fused.gguf");
        write_gguf(&for_lora, &fused_path, FileType::F32, name).unwrap();

        let (base, adapter, fused) = (
            GgufFile::open(&base_path).unwrap(),
            GgufFile::open(&lora_path).unwrap(),
            GgufFile::open(&fused_path).unwrap(),
        );
        assert_eq!(
            adapter.value("general.type"),
            Some(&Value::String("adapter".into()))
        );
        let Some(Value::F32(alpha)) = adapter.value("adapter.lora.alpha") else {
            panic!("no alpha");
        };
        let mut checked = 0;
        for t in fused.tensors() {
            let w = base.tensor(&t.name).unwrap();
            let values = |f: &GgufFile, t| f.dequantize(t).unwrap();
            let (w0, w1) = (values(&base, w), values(&fused, t));
            let (Some(a), Some(b)) = (
                adapter.tensor(&format!("{}.lora_a", t.name)),
                adapter.tensor(&format!("{}.lora_b", t.name)),
            ) else {
                assert_eq!(w0, w1, "{name}: {} changed without an adapter", t.name);
                continue;
            };
            // GGUF dims are innermost first: A (r, in) is dims [in, r],
            // B (out, r) is [r, out], W (out, in) is [in, out].
            let (inp, r, out) = (a.dims[0] as usize, a.dims[1] as usize, b.dims[1] as usize);
            let (av, bv) = (values(&adapter, a), values(&adapter, b));
            let scale = alpha / r as f32;
            let mut worst = 0f32;
            for o in 0..out {
                for i in 0..inp {
                    let delta: f32 = (0..r).map(|k| bv[o * r + k] * av[k * inp + i]).sum();
                    let expect = w0[o * inp + i] + scale * delta;
                    worst = worst.max((expect - w1[o * inp + i]).abs());
                }
            }
            assert!(worst < 1e-5, "{name}: {}: max |Δ| {worst}", t.name);
            checked += 1;
        }
        assert_eq!(checked, report.projections, "{name}");
    }
}

/// The sizes a quant picker shows before writing are the sizes written,
/// byte for byte, for every architecture and several mixes.
#[test]
fn planned_sizes_are_the_sizes_written() {
    let types = [
        FileType::F16,
        FileType::Q8_0,
        FileType::Q4_K_M,
        FileType::Q6_K,
    ];
    for name in ["llama", "qwen3", "gemma3", "phi3", "gpt2"] {
        let tmp = tempfile::tempdir().unwrap();
        let loaded = model::load(&fixture(name), &LoadOptions::default()).unwrap();
        let planned = finetune::export::gguf::planned_sizes(&loaded, name, &types).unwrap();
        for (file_type, bytes) in planned {
            let written = export(name, file_type, tmp.path());
            let real = std::fs::metadata(&written).unwrap().len();
            assert_eq!(bytes, real, "{name} {}", file_type.name());
        }
    }
}
