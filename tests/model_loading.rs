//! Loading Hugging Face folders: tiny random Llama / Qwen2 models written by
//! the test, run through the engine; bad inputs give errors naming the file.

mod common;

use common::{max_abs_diff, TinyModel};
use finetune::mlx_rs::{ops, ops::indexing::IndexOp, Array};
use finetune::model::{self, projection::Quantization, LoadOptions, Model};

/// The error `model::load` gives for `path`.
fn load_error(path: &std::path::Path) -> String {
    model::load(path, &LoadOptions::default())
        .err()
        .expect("loading fails")
        .to_string()
}

/// Replaces `from` by `to` in the folder's config.json.
fn edit_config(dir: &std::path::Path, from: &str, to: &str) {
    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap().replace(from, to);
    std::fs::write(&config, text).unwrap();
}

fn tokens(ids: &[i32]) -> Array {
    Array::from_slice(ids, &[1, ids.len() as i32])
}

#[test]
fn tiny_llama_loads_and_predicts_a_distribution() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let mut loaded = model::load(&dir, &LoadOptions::default()).unwrap();
    let vocab = loaded.tokenizer.vocab_size() as i32;
    let logits = loaded
        .model
        .forward(&tokens(&[5, 9, 200, 17]), None)
        .unwrap();
    assert_eq!(logits.shape(), &[1, 4, vocab]);
    let nan: bool = ops::is_nan(&logits)
        .unwrap()
        .any(None)
        .unwrap()
        .item_exact();
    let inf: bool = ops::is_inf(&logits)
        .unwrap()
        .any(None)
        .unwrap()
        .item_exact();
    assert!(!nan && !inf);
}

#[test]
fn kv_cache_decoding_matches_a_full_forward_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let mut m = model::load(&dir, &LoadOptions::default()).unwrap().model;
    let ids = [3, 70, 71, 140, 9, 33];
    let full = m.forward(&tokens(&ids), None).unwrap();

    let mut cache = m.new_cache();
    let prefix = m.forward(&tokens(&ids[..3]), Some(&mut cache)).unwrap();
    assert!(max_abs_diff(&prefix, &full.index((.., ..3, ..))) < 1e-4);
    for (pos, &id) in ids.iter().enumerate().skip(3) {
        let step = m.forward(&tokens(&[id]), Some(&mut cache)).unwrap();
        let expected = full.index((.., pos as i32..pos as i32 + 1, ..));
        assert!(max_abs_diff(&step, &expected) < 1e-4, "position {pos}");
    }
}

#[test]
fn tied_embeddings_and_qwen2_biases_load() {
    let tmp = tempfile::tempdir().unwrap();
    let tied = TinyModel {
        tie_word_embeddings: true,
        ..Default::default()
    }
    .write(tmp.path());
    let Model::Llama(m) = model::load(&tied, &LoadOptions::default()).unwrap().model else {
        panic!("a Llama");
    };
    assert!(m.lm_head.is_none());

    let tmp = tempfile::tempdir().unwrap();
    let qwen = TinyModel {
        model_type: "qwen2",
        ..Default::default()
    }
    .write(tmp.path());
    let Model::Llama(m) = model::load(&qwen, &LoadOptions::default()).unwrap().model else {
        panic!("a Llama");
    };
    assert!(m.model.layers[0]
        .self_attn
        .q_proj
        .as_ref()
        .unwrap()
        .bias
        .is_some());
    assert!(m.model.layers[0].self_attn.o_proj.bias.is_none());
}

#[test]
fn quantized_projections_stay_close_to_dense_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let mut dense = model::load(&dir, &LoadOptions::default()).unwrap().model;
    let mut quantized = dense.clone();
    for p in quantized.projections_mut() {
        p.quantize(Quantization {
            group_size: 32,
            bits: 8,
        })
        .unwrap();
    }
    assert!(quantized
        .projections_mut()
        .all(|p| p.quantization.is_some()));
    let ids = tokens(&[1, 2, 3, 4, 5]);
    let a = dense.forward(&ids, None).unwrap();
    let b = quantized.forward(&ids, None).unwrap();
    let scale: f32 = a.abs().unwrap().max(None).unwrap().item_exact();
    assert!(max_abs_diff(&a, &b) < 0.05 * scale, "8-bit error too large");
    // Dequantizing gives back a dense model computing the same thing.
    quantized.dequantize().unwrap();
    assert!(quantized
        .projections_mut()
        .all(|p| p.quantization.is_none()));
    let c = quantized.forward(&ids, None).unwrap();
    assert!(max_abs_diff(&b, &c) < 1e-4);
}

#[test]
fn missing_config_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load_error(tmp.path());
    assert!(err.contains("no config.json"), "{err}");
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
}

#[test]
fn unknown_architecture_lists_the_supported_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    edit_config(&dir, "\"llama\"", "\"mamba\"");
    let err = load_error(&dir);
    assert!(
        err.contains("mamba") && err.contains("llama, mistral, qwen2"),
        "{err}"
    );
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn truncated_safetensors_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(&dir);
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel {
        layers: 1,
        ..Default::default()
    }
    .write(tmp.path());
    edit_config(&dir, "\"num_hidden_layers\":1", "\"num_hidden_layers\":2");
    let err = load_error(&dir);
    assert!(
        err.contains("model.layers.1.self_attn.q_proj.weight"),
        "{err}"
    );
}

#[test]
fn corrupt_gguf_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("broken.gguf");
    std::fs::write(&path, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let err = load_error(&path);
    assert!(err.contains("broken.gguf"), "{err}");
}
