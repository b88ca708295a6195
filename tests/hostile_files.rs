//! Broken and hostile model files are refused with an error naming the file
//! and the field, never a panic, an abort or an unbounded allocation
//! (issue 18). Each case starts from a small valid fixture and breaks one
//! thing; a few go through the real `ft` binary (exit code 2, no panic or
//! source location in stderr).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use finetune::fixtures::TinyModel;
use finetune::gguf::write::{GgufWriter, TensorSpec};
use finetune::gguf::{GgufFile, Value};
use finetune::model::{self, LoadOptions};

fn parity(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

/// A copy of a fixture folder to break.
fn copy_folder(src: &Path, dst: &Path) -> PathBuf {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    dst.to_path_buf()
}

fn load_error(path: &Path) -> String {
    match model::load(path, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded, expected a refusal", path.display()),
        Err(e @ (finetune::Error::Invalid(_) | finetune::Error::Io { .. })) => e.to_string(),
        Err(e) => panic!("expected Error::Invalid, got {e:?}"),
    }
}

fn assert_names(msg: &str, file: &str, field: &str) {
    assert!(msg.contains(file), "the error should name `{file}`: {msg}");
    assert!(
        msg.contains(field),
        "the error should name `{field}`: {msg}"
    );
    for leak in ["panicked", ".rs:", ".cpp:"] {
        assert!(!msg.contains(leak), "the error leaks `{leak}`: {msg}");
    }
}

/// `ft <args>` must exit 2 naming the file and the field, without a panic
/// or a source location.
fn assert_ft_refuses(args: &[&str], file: &str, field: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "ft {args:?}: {stderr}");
    assert_names(&stderr, file, field);
}

fn tiny(dir: &Path) -> PathBuf {
    TinyModel::default().write(dir)
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Saves tensors over the file they were (lazily) loaded from.
fn save(tensors: std::collections::HashMap<String, finetune::mlx_rs::Array>, path: &Path) {
    let tmp = path.with_extension("tmp.safetensors");
    finetune::mlx_rs::Array::save_safetensors(tensors, None, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ------------------------------------------------------------ config.json

#[test]
fn config_json_with_zero_kv_heads_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    edit_config(&dir, |c| c["num_key_value_heads"] = 0.into());
    let msg = load_error(&dir);
    assert_names(&msg, "config.json", "num_key_value_heads");
    let shown = dir.to_string_lossy().into_owned();
    assert_ft_refuses(
        &["models", "info", &shown],
        "config.json",
        "num_key_value_heads",
    );
}

#[test]
fn config_json_with_four_billion_layers_is_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    edit_config(&dir, |c| c["num_hidden_layers"] = i32::MAX.into());
    assert_names(&load_error(&dir), "config.json", "num_hidden_layers");
}

#[test]
fn config_json_with_nan_rope_theta_or_eps_is_refused() {
    for (field, value) in [("rope_theta", -1.0), ("rms_norm_eps", 0.0)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tiny(tmp.path());
        edit_config(&dir, |c| c[field] = value.into());
        assert_names(&load_error(&dir), "config.json", field);
    }
}

#[test]
fn config_json_whose_hidden_size_disagrees_with_the_weights_is_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    edit_config(&dir, |c| c["intermediate_size"] = 96.into());
    let msg = load_error(&dir);
    assert_names(
        &msg,
        "model.layers.0.mlp.gate_proj.weight",
        "intermediate_size",
    );
}

#[test]
fn tokenizer_ids_beyond_the_embedding_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    // An embedding of 200 rows under a tokenizer of 260 ids: the config
    // and tensors agree with each other, not with the tokenizer.
    let weights = dir.join("model.safetensors");
    let mut tensors = finetune::mlx_rs::Array::load_safetensors(&weights).unwrap();
    for name in ["model.embed_tokens.weight", "lm_head.weight"] {
        let t = tensors.remove(name).unwrap();
        use finetune::mlx_rs::ops::indexing::IndexOp;
        let cut = t.index(0..200);
        tensors.insert(name.to_string(), cut);
    }
    save(tensors, &weights);
    edit_config(&dir, |c| c["vocab_size"] = 200.into());
    let msg = load_error(&dir);
    assert_names(&msg, &dir.to_string_lossy(), "tokenizer");
    assert!(msg.contains("200"), "{msg}");
}

// ------------------------------------------------------------ safetensors

/// The header of a safetensors file and the offset its data starts at.
fn header(bytes: &[u8]) -> (serde_json::Map<String, serde_json::Value>, usize) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), 8 + n)
}

fn with_header(header: &serde_json::Map<String, serde_json::Value>, data: &[u8]) -> Vec<u8> {
    let text = serde_json::to_vec(header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend_from_slice(data);
    out
}

/// The llama parity fixture with its header edited.
fn broken_safetensors(
    dir: &Path,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> PathBuf {
    let dir = copy_folder(&parity("llama"), dir);
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (mut h, start) = header(&bytes);
    edit(&mut h);
    std::fs::write(&path, with_header(&h, &bytes[start..])).unwrap();
    dir
}

fn first_tensor(h: &serde_json::Map<String, serde_json::Value>) -> String {
    h.keys().find(|k| *k != "__metadata__").unwrap().clone()
}

#[test]
fn safetensors_offsets_past_the_end_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut name = String::new();
    let dir = broken_safetensors(tmp.path(), |h| {
        name = first_tensor(h);
        h[&name]["data_offsets"] = serde_json::json!([0, 1u64 << 40]);
    });
    let msg = load_error(&dir);
    assert_names(&msg, "model.safetensors", "data_offsets");
    assert!(
        msg.contains(&name),
        "the error should name the tensor: {msg}"
    );
    let shown = dir.to_string_lossy().into_owned();
    assert_ft_refuses(
        &["models", "info", &shown],
        "model.safetensors",
        "data_offsets",
    );
}

#[test]
fn safetensors_overlapping_tensors_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = broken_safetensors(tmp.path(), |h| {
        // Two tensors of one shape and dtype sharing one span.
        let mut spans: Vec<(String, u64, u64, String)> = h
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(k, v)| {
                let o = &v["data_offsets"];
                (
                    k.clone(),
                    o[0].as_u64().unwrap(),
                    o[1].as_u64().unwrap(),
                    v["shape"].to_string() + v["dtype"].as_str().unwrap(),
                )
            })
            .collect();
        spans.sort_by_key(|s| s.1);
        let (a, b) = spans
            .iter()
            .enumerate()
            .find_map(|(i, a)| spans[i + 1..].iter().find(|b| b.3 == a.3).map(|b| (a, b)))
            .unwrap();
        h[&b.0]["data_offsets"] = serde_json::json!([a.1, a.2]);
    });
    assert_names(&load_error(&dir), "model.safetensors", "overlaps");
}

#[test]
fn safetensors_shape_that_disagrees_with_its_bytes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = broken_safetensors(tmp.path(), |h| {
        let name = first_tensor(h);
        h[&name]["shape"] = serde_json::json!([3, 5, 7]);
    });
    assert_names(&load_error(&dir), "model.safetensors", "data_offsets");
}

#[test]
fn safetensors_header_length_past_the_end_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_folder(&parity("llama"), tmp.path());
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    assert_names(&load_error(&dir), "model.safetensors", "header length");
}

#[test]
fn safetensors_index_naming_a_file_outside_the_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_folder(&parity("llama"), tmp.path());
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"weight_map": {"model.norm.weight": "../../etc/passwd"}}"#,
    )
    .unwrap();
    assert_names(
        &load_error(&dir),
        "model.safetensors.index.json",
        "weight_map",
    );
}

// ------------------------------------------------------- quantized folder

#[test]
fn quantized_folder_with_group_size_zero_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    edit_config(&dir, |c| {
        c["quantization"] = serde_json::json!({"group_size": 0, "bits": 4})
    });
    let msg = load_error(&dir);
    assert_names(&msg, "config.json", "group_size");
    let shown = dir.to_string_lossy().into_owned();
    assert_ft_refuses(&["models", "info", &shown], "config.json", "group_size");
}

#[test]
fn quantized_layer_with_odd_scales_shape_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny(tmp.path());
    let weights = dir.join("model.safetensors");
    use finetune::mlx_rs::Array;
    let mut tensors = Array::load_safetensors(&weights).unwrap();
    // q_proj (64 × 64) "quantized" at 4 bits: 8 packed words per row, but
    // scales for 3 groups per row.
    tensors.insert(
        "model.layers.0.self_attn.q_proj.weight".into(),
        Array::zeros::<u32>(&[64, 8]).unwrap(),
    );
    for t in ["scales", "biases"] {
        tensors.insert(
            format!("model.layers.0.self_attn.q_proj.{t}"),
            Array::zeros::<f32>(&[64, 3]).unwrap(),
        );
    }
    save(tensors, &weights);
    edit_config(&dir, |c| {
        c["quantization"] = serde_json::json!({"group_size": 32, "bits": 4})
    });
    assert_names(&load_error(&dir), "q_proj", "scales");
}

// ----------------------------------------------------- PyTorch .bin (zip)

/// The gpt2-bin fixture's zip entries.
fn bin_entries() -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(parity("gpt2-bin").join("pytorch_model.bin")).unwrap();
    let mut archive = zip::ZipArchive::new(file).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut e = archive.by_index(i).unwrap();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            (e.name().to_string(), b)
        })
        .collect()
}

fn write_bin(dir: &Path, entries: &[(String, Vec<u8>)]) -> PathBuf {
    let dir = copy_folder(&parity("gpt2-bin"), dir);
    let mut zip =
        zip::ZipWriter::new(std::fs::File::create(dir.join("pytorch_model.bin")).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    dir
}

/// The fixture with its pickle replaced.
fn bin_with_pickle(dir: &Path, pickle: Vec<u8>) -> PathBuf {
    let entries: Vec<_> = bin_entries()
        .into_iter()
        .map(|(n, b)| {
            if n.ends_with("data.pkl") {
                (n, pickle.clone())
            } else {
                (n, b)
            }
        })
        .collect();
    write_bin(dir, &entries)
}

/// A pickle of `{"w": _rebuild_tensor_v2(storage 0 (float), offset, size, stride)}`.
fn tensor_pickle(offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'(']; // PROTO 2, EMPTY_DICT, MARK
    p.extend(b"X\x01\x00\x00\x00w"); // key
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    // persistent id ('storage', FloatStorage, '0', 'cpu', n)
    p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ");
    let long = |p: &mut Vec<u8>, v: i64| {
        p.push(0x8a);
        p.push(8);
        p.extend(v.to_le_bytes());
    };
    long(&mut p, offset);
    for dims in [size, stride] {
        p.push(b'(');
        for &d in dims {
            long(&mut p, d);
        }
        p.push(b't');
    }
    p.extend(b"\x89)tR"); // requires_grad False, empty hooks; REDUCE
    p.extend(b"u."); // SETITEMS, STOP
    p
}

fn bin_error(dir: &Path) -> String {
    match finetune::model::pytorch::read_bin(&dir.join("pytorch_model.bin")) {
        Ok(_) => panic!("read, expected a refusal"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bin_with_negative_stride_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bin_with_pickle(tmp.path(), tensor_pickle(0, &[4, 4], &[-4, 1]));
    assert_names(&bin_error(&dir), "pytorch_model.bin", "stride");
    let shown = dir.to_string_lossy().into_owned();
    assert_ft_refuses(&["models", "info", &shown], "pytorch_model.bin", "stride");
}

#[test]
fn bin_with_overflowing_size_or_offset_is_refused() {
    for (offset, size, stride, field) in [
        (0, vec![1i64 << 40, 1 << 40], vec![1, 1], "size"),
        (-5, vec![2], vec![1], "storage_offset"),
        (i64::MAX, vec![2], vec![1], "storage_offset"),
        (0, vec![2, 2], vec![i64::MAX, 1], "stride"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = bin_with_pickle(tmp.path(), tensor_pickle(offset, &size, &stride));
        assert_names(&bin_error(&dir), "pytorch_model.bin", field);
    }
}

#[test]
fn bin_whose_view_reaches_past_its_storage_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Storage 0 of the fixture holds 81920 bytes: 20480 floats.
    let dir = bin_with_pickle(tmp.path(), tensor_pickle(20000, &[1000], &[1]));
    assert_names(&bin_error(&dir), "pytorch_model.bin", "storage");
}

#[test]
fn pickle_memo_bomb_is_refused_without_exhausting_memory() {
    // A list put in the memo, then, 60 times: two copies of the memo's
    // value in a new tuple, memoized again. Each round doubles the value:
    // 2^60 nodes from a pickle of a few hundred bytes.
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..60 {
        p.extend(b"(h\x00h\x00tq\x00");
    }
    p.push(b'.');
    let tmp = tempfile::tempdir().unwrap();
    let dir = bin_with_pickle(tmp.path(), p);
    assert_names(&bin_error(&dir), "pytorch_model.bin", "memo");
}

#[test]
fn pickle_nested_a_million_deep_is_refused_without_overflowing_the_stack() {
    let mut p = vec![0x80, 2, b')'];
    p.extend(std::iter::repeat_n(0x85u8, 1_000_000)); // TUPLE1 around the top
    p.push(b'.');
    let tmp = tempfile::tempdir().unwrap();
    let dir = bin_with_pickle(tmp.path(), p);
    assert_names(&bin_error(&dir), "pytorch_model.bin", "nesting");
}

#[test]
fn bin_zip_entry_declaring_more_than_the_file_holds_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_bin(tmp.path(), &bin_entries());
    let path = dir.join("pytorch_model.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    // The central directory record of data.pkl (the first entry): its
    // uncompressed size field (offset 24) set to 4 GiB - 1.
    let cd = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    bytes[cd + 24..cd + 28].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    assert_names(&bin_error(&dir), "pytorch_model.bin", "size");
}

// ------------------------------------------------------------------ GGUF

/// The llama GGUF fixture rewritten with its metadata edited.
fn broken_gguf(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Value)>)) -> PathBuf {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/architectures/llama.gguf");
    let file = GgufFile::open(&src).unwrap();
    let mut metadata: Vec<(String, Value)> = file
        .keys()
        .filter(|k| *k != "general.alignment")
        .map(|k| (k.to_string(), file.value(k).unwrap().clone()))
        .collect();
    edit(&mut metadata);
    let specs: Vec<TensorSpec> = file
        .tensors()
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
        })
        .collect();
    let out = dir.join("broken.gguf");
    let mut w = GgufWriter::create(&out, &metadata, &specs, true).unwrap();
    for t in file.tensors() {
        w.write_data(file.tensor_bytes(t)).unwrap();
    }
    w.finish().unwrap();
    out
}

fn set(metadata: &mut [(String, Value)], suffix: &str, value: Value) {
    let entry = metadata
        .iter_mut()
        .find(|(k, _)| k.ends_with(suffix))
        .unwrap_or_else(|| panic!("no key ending in {suffix}"));
    entry.1 = value;
}

#[test]
fn gguf_with_head_count_zero_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = broken_gguf(tmp.path(), |m| {
        set(m, ".attention.head_count", Value::U32(0))
    });
    assert_names(&load_error(&path), "broken.gguf", "head_count");
    let shown = path.to_string_lossy().into_owned();
    assert_ft_refuses(&["models", "info", &shown], "broken.gguf", "head_count");
}

#[test]
fn gguf_with_block_count_u32_max_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = broken_gguf(tmp.path(), |m| set(m, ".block_count", Value::U32(u32::MAX)));
    assert_names(&load_error(&path), "broken.gguf", "block_count");
}

#[test]
fn gguf_with_empty_token_array_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = broken_gguf(tmp.path(), |m| {
        set(
            m,
            "tokenizer.ggml.tokens",
            Value::Array(finetune::gguf::Array::Strings(Vec::new())),
        )
    });
    assert_names(&load_error(&path), "broken.gguf", "tokenizer.ggml.tokens");
}

#[test]
fn gguf_with_token_type_longer_than_the_vocabulary_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = broken_gguf(tmp.path(), |m| {
        let n = m
            .iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("tokenizer.ggml.tokens", Value::Array(finetune::gguf::Array::Strings(t))) => {
                    Some(t.len())
                }
                _ => None,
            })
            .unwrap();
        let types = Value::Array(finetune::gguf::Array::I32(vec![1; n + 10]));
        match m.iter_mut().find(|(k, _)| k == "tokenizer.ggml.token_type") {
            Some(e) => e.1 = types,
            None => m.push(("tokenizer.ggml.token_type".into(), types)),
        }
    });
    assert_names(&load_error(&path), "broken.gguf", "token_type");
}

// ------------------------------------------------- fuzz regressions (ours)

/// Every input the fuzzer ever crashed a reader of ours with, kept under
/// fuzz/regressions/<target>/, must now be refused (or read) cleanly.
#[test]
fn fuzz_regressions_of_model_readers_are_refused_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for (target, name) in [
        ("safetensors", "model.safetensors"),
        ("bin", "pytorch_model.bin"),
    ] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let input = e.path();
            if input.extension().is_some_and(|x| x == "txt") {
                continue;
            }
            let tmp = tempfile::tempdir().unwrap();
            let fixture = if target == "bin" { "gpt2-bin" } else { "llama" };
            let dir = copy_folder(&parity(fixture), tmp.path());
            std::fs::copy(&input, dir.join(name)).unwrap();
            if let Err(e) = model::load(&dir, &LoadOptions::default()) {
                let msg = e.to_string();
                assert!(
                    !msg.contains(".cpp:") && !msg.contains(".rs:"),
                    "{}: {msg}",
                    input.display()
                );
            }
        }
    }
}

fn regression(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions")
            .join(path),
    )
    .unwrap()
}

/// The parquet crate panics on these fuzzer-found files; `ft data inspect`
/// refuses them as bad input (exit 2) naming the file.
#[test]
fn damaged_parquet_files_that_panic_the_parquet_crate_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "parquet-negative-column-start",
        "parquet-definition-level",
        "parquet-bit-util-size",
    ] {
        let bytes = regression(&format!("data/{name}"));
        // The fuzz input's first byte picks the format (3: parquet).
        assert_eq!(bytes[0], 3, "{name}");
        let path = tmp.path().join(format!("{name}.parquet"));
        std::fs::write(&path, &bytes[1..]).unwrap();
        let file = path.display().to_string();
        assert_ft_refuses(&["data", "inspect", &file], &file, "Parquet");
    }
}

/// The tokenizers crate panics on a malformed `decoder`; loading refuses it.
#[test]
fn a_tokenizer_json_that_panics_the_tokenizers_crate_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokenizer.json");
    std::fs::write(&path, regression("tokenizer/decoder-helper-error")).unwrap();
    let err = match finetune::tokenizer::Tokenizer::from_files(&path, None) {
        Ok(_) => panic!("a malformed tokenizer.json loaded"),
        Err(e) => e.to_string(),
    };
    assert_names(&err, "tokenizer.json", "cannot load tokenizer");
}
