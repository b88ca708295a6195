//! The building blocks of GGUF export against llama.cpp.
//!
//! - `finetune::gguf::quantize` must give, for every type, the very bytes
//!   llama.cpp's `ggml_quantize_chunk` gives without an importance matrix
//!   (what `llama-quantize` writes). `tests/fixtures/gguf/quantize_reference.safetensors`
//!   holds the inputs (real weights of SmolLM2 and Gemma 3, edge cases) and
//!   ggml's bytes, made by scripts/gguf_quantize_reference/run.sh; the larger
//!   set that script leaves in `.cache/gguf-quantize-reference/` (whole
//!   tensors, ten million values) is checked too when it is there.
//! - dequantize(quantize(x)) comes back within each type's usual error.

use finetune::gguf::mix::{llama_order, tensor_types, FileType, ModelInfo, TensorDesc};
use finetune::gguf::quantize::{f32_to_bf16, f32_to_f16, quantize, QUANTIZABLE};
use finetune::gguf::write::{GgufWriter, TensorSpec};
use finetune::gguf::{quants, Array, GgmlType, GgufFile, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A safetensors tensor: dtype, shape, bytes.
type Raw = (String, Vec<usize>, Vec<u8>);

fn read_safetensors(path: &Path) -> BTreeMap<String, Raw> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = BTreeMap::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let shape = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let off = info["data_offsets"].as_array().unwrap();
        let (s, e) = (
            off[0].as_u64().unwrap() as usize,
            off[1].as_u64().unwrap() as usize,
        );
        let dtype = info["dtype"].as_str().unwrap().to_string();
        out.insert(name.clone(), (dtype, shape, data[s..e].to_vec()));
    }
    out
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn ty_named(name: &str) -> GgmlType {
    *QUANTIZABLE
        .iter()
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("no type {name}"))
}

#[test]
fn quantize_matches_llama_cpp_fixture() {
    let st = read_safetensors(&root().join("tests/fixtures/gguf/quantize_reference.safetensors"));
    let mut per_type: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut cases = 0;
    for (key, (dtype, shape, bytes)) in &st {
        let Some(case) = key.strip_suffix(".input") else {
            continue;
        };
        assert_eq!(dtype, "F32");
        cases += 1;
        let (row_len, x) = (shape[1], floats(bytes));
        // F32 is a copy (run.sh checked ggml's bytes are the input's).
        assert_eq!(&quantize(GgmlType::F32, &x, row_len).unwrap(), bytes);
        for (k, (_, _, reference)) in st.range(format!("{case}.")..format!("{case}/")) {
            let tname = &k[case.len() + 1..];
            if tname == "input" {
                continue;
            }
            let ty = ty_named(tname);
            let mine = quantize(ty, &x, row_len).unwrap_or_else(|e| panic!("{key} {ty}: {e}"));
            let blocks = mine.len() / ty.type_size();
            let differ = mine
                .chunks(ty.type_size())
                .zip(reference.chunks(ty.type_size()))
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(mine.len(), reference.len(), "{case} {ty}");
            assert_eq!(differ, 0, "{case} {ty}: {differ} of {blocks} blocks differ");
            let e = per_type.entry(ty.name()).or_default();
            e.0 += 1;
            e.1 += blocks;
        }
    }
    assert_eq!(cases, 31);
    // Every type was compared on every finite case (29 of 31; the two float_
    // cases are F16/BF16 only).
    assert_eq!(per_type.len(), 12, "{per_type:?}");
    for (t, (n, _)) in &per_type {
        let expected = if *t == "F16" || *t == "BF16" { 31 } else { 29 };
        assert_eq!(*n, expected, "{t}");
    }
    eprintln!("bytes equal to llama.cpp's (cases, blocks): {per_type:?}");
}

/// The big set run.sh leaves in the cache: an FTQI input file, its case
/// list and ggml's bytes per type.
#[test]
fn quantize_matches_llama_cpp_big_set_when_present() {
    let dir = root().join(".cache/gguf-quantize-reference");
    let (Ok(raw), Ok(meta)) = (
        std::fs::read(dir.join("big.bin")),
        std::fs::read(dir.join("big.json")),
    ) else {
        eprintln!("skipped: no {}", dir.display());
        return;
    };
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    let mut at = 8;
    let mut cases = vec![];
    for c in meta.as_array().unwrap() {
        let row_len = c["row_len"].as_u64().unwrap() as usize;
        let n = row_len * c["n_rows"].as_u64().unwrap() as usize;
        at += 8;
        cases.push((
            c["name"].as_str().unwrap().to_string(),
            row_len,
            floats(&raw[at..at + 4 * n]),
        ));
        at += 4 * n;
    }
    assert_eq!(at, raw.len());
    let total: usize = cases.iter().map(|c| c.2.len()).sum();
    for ty in QUANTIZABLE {
        // The harness names files as ggml does ("q4_K", "bf16").
        let file = dir.join("big").join(format!(
            "{}.bin",
            ty.name().to_lowercase().replace("_k", "_K")
        ));
        let reference = std::fs::read(&file).unwrap();
        let mut off = 0;
        for (name, row_len, x) in &cases {
            let mine = quantize(ty, x, *row_len).unwrap();
            assert!(
                mine == reference[off..off + mine.len()],
                "{name} {ty} differs"
            );
            off += mine.len();
        }
        assert_eq!(off, reference.len(), "{ty}");
    }
    eprintln!(
        "{} cases, {total} values: every type equal to llama.cpp's",
        cases.len()
    );
}

/// Deterministic N(0, σ²) values (xorshift + Box-Muller).
fn gaussian(n: usize, sigma: f64, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut u = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (u().max(1e-12), u());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * sigma) as f32
        })
        .collect()
}

#[test]
fn dequantize_of_quantize_round_trips() {
    let x = gaussian(256 * 64, 0.02, 12345);
    let rms = |v: &mut dyn Iterator<Item = f64>| {
        let (s, n) = v.fold((0.0, 0usize), |(s, n), e| (s + e * e, n + 1));
        (s / n as f64).sqrt()
    };
    let x_rms = rms(&mut x.iter().map(|&v| v as f64));
    // Relative RMS error bounds (measured: F16 2.0e-4, BF16 1.7e-3, Q8_0
    // 5.4e-3, Q6_K 1.8e-2, Q5_K 3.6e-2, Q5_1 3.8e-2, Q5_0 4.3e-2, Q4_K
    // 7.1e-2, Q4_1 7.8e-2, Q4_0 8.6e-2, Q3_K 0.15, Q2_K 0.30).
    use GgmlType::*;
    let bounds = [
        (F32, 0.0),
        (F16, 2.5e-4),
        (BF16, 2.0e-3),
        (Q8_0, 6.5e-3),
        (Q6_K, 2.2e-2),
        (Q5_K, 4.3e-2),
        (Q5_1, 4.5e-2),
        (Q5_0, 5.2e-2),
        (Q4_K, 8.5e-2),
        (Q4_1, 9.4e-2),
        (Q4_0, 0.103),
        (Q3_K, 0.18),
        (Q2_K, 0.355),
    ];
    for (ty, bound) in bounds {
        let q = quantize(ty, &x, 256).unwrap();
        assert_eq!(q.len(), x.len() / ty.block_size() * ty.type_size());
        let y = quants::dequantize(ty, &q, x.len()).unwrap();
        let rel = rms(&mut x.iter().zip(&y).map(|(a, b)| (a - b) as f64)) / x_rms;
        eprintln!("{ty}: relative RMS error {rel:.3e}");
        assert!(
            rel <= bound,
            "{ty}: relative RMS error {rel:.3e} > {bound:.1e}"
        );
        if ty == F32 {
            assert_eq!(x, y);
        }
    }
    // F16 and BF16 are correctly rounded: each value comes back within half
    // a unit in the last place, and values already representable come back
    // exactly.
    for &v in &x {
        let h = quants::f16_to_f32(f32_to_f16(v));
        let ulp = (quants::f16_to_f32(f32_to_f16(v.abs()) + 1) - h.abs()).abs();
        assert!((h - v).abs() <= ulp / 2.0, "{v} -> {h}");
        assert_eq!(f32_to_f16(h), f32_to_f16(v));
        let b = f32::from_bits(u32::from(f32_to_bf16(v)) << 16);
        assert!((b - v).abs() <= v.abs() * (1.0 / 256.0), "{v} -> {b}");
    }
}

#[test]
fn quantize_refuses_what_llama_cpp_cannot_store() {
    use GgmlType::*;
    let x = gaussian(512, 1.0, 7);
    // Rows must be whole blocks.
    assert!(quantize(Q4_K, &x, 128)
        .unwrap_err()
        .contains("blocks hold 256"));
    assert!(quantize(Q8_0, &x, 48).is_err());
    assert!(quantize(Q8_0, &x[..500], 32)
        .unwrap_err()
        .contains("whole rows"));
    assert!(quantize(F16, &x, 0).is_err());
    assert!(quantize(IQ4_NL, &x, 256)
        .unwrap_err()
        .contains("cannot quantize"));
    // Non-finite values: block types refuse, float types convert.
    let mut bad = x.clone();
    bad[300] = f32::INFINITY;
    for ty in [Q4_0, Q8_0, Q4_K, Q6_K] {
        assert!(
            quantize(ty, &bad, 256).unwrap_err().contains("not finite"),
            "{ty}"
        );
    }
    bad[301] = f32::NAN;
    let h = quantize(F16, &bad, 256).unwrap();
    assert_eq!(&h[600..604], &[0x00, 0x7c, 0x00, 0x7e]);
    // A scale that overflows f16 (llama-quantize's validation refuses it).
    let huge = vec![1e30f32; 256];
    assert!(quantize(Q8_0, &huge, 256)
        .unwrap_err()
        .contains("overflows f16"));
    assert!(quantize(Q4_K, &huge, 256)
        .unwrap_err()
        .contains("overflows f16"));
}

/// A mix fixture: the model line and (name, type, dims) per tensor.
/// (name, type, dims) of one tensor in a mix fixture.
type MixRow = (String, String, Vec<u64>);

fn read_mix(file: &str) -> (Vec<(String, String)>, Vec<MixRow>) {
    let text = std::fs::read_to_string(root().join("tests/fixtures/gguf").join(file)).unwrap();
    let mut model = vec![];
    let mut tensors = vec![];
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# arch=") {
            model = format!("arch={rest}")
                .split(' ')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
        } else if !line.starts_with('#') {
            let mut it = line.split(' ');
            let (name, ty, dims) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            let dims = dims.split(',').map(|d| d.parse().unwrap()).collect();
            tensors.push((name.to_string(), ty.to_string(), dims));
        }
    }
    (model, tensors)
}

/// Predicts every tensor's type of a file llama-quantize made and counts
/// the right ones.
fn check_mix(file: &str, ftype: FileType, n_tensors: usize) {
    let (model, tensors) = read_mix(file);
    let get = |k: &str| model.iter().find(|m| m.0 == k).unwrap().1.clone();
    assert_eq!(get("file_type"), ftype.id().to_string());
    let arch = get("arch");
    let info = ModelInfo {
        arch: &arch,
        n_layer: get("n_layer").parse().unwrap(),
        n_head: get("n_head").parse().unwrap(),
        n_head_kv: get("n_head_kv").parse().unwrap(),
        n_expert: 0,
        is_70b: false,
    };
    // The converter writes 1-D tensors (norms) as F32.
    let descs: Vec<TensorDesc> = tensors
        .iter()
        .map(|(name, _, dims)| TensorDesc {
            name,
            dims,
            source: GgmlType::F32,
        })
        .collect();
    let predicted = tensor_types(ftype, &info, &descs).unwrap();
    let wrong: Vec<String> = tensors
        .iter()
        .zip(&predicted)
        .filter(|((_, ty, _), p)| p.name() != ty)
        .map(|((name, ty, _), p)| format!("{name}: file {ty}, predicted {p}"))
        .collect();
    assert_eq!(tensors.len(), n_tensors);
    eprintln!(
        "{file}: {} of {} tensor types predicted",
        tensors.len() - wrong.len(),
        tensors.len()
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn mix_predicts_gemma3_270m_q4_k_m() {
    check_mix("mix_gemma3_270m_q4_k_m.txt", FileType::Q4_K_M, 236);
    // llama-quantize writes tensors in its visiting order; this file shows it.
    let (_, tensors) = read_mix("mix_gemma3_270m_q4_k_m.txt");
    let names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
    let order = llama_order(&names);
    assert_eq!(order, (0..names.len()).collect::<Vec<_>>());
}

#[test]
fn mix_predicts_smollm2_135m_q4_1() {
    check_mix("mix_smollm2_135m_q4_1.txt", FileType::Q4_1, 272);
}

#[test]
fn mix_rules() {
    use GgmlType::*;
    let dense = |n_layer| ModelInfo {
        arch: "llama",
        n_layer,
        n_head: 32,
        n_head_kv: 8,
        n_expert: 0,
        is_70b: false,
    };
    let mut names = vec![
        "token_embd.weight".to_string(),
        "output.weight".into(),
        "output_norm.weight".into(),
    ];
    for l in 0..16 {
        for t in ["attn_v", "ffn_down", "attn_q", "attn_norm"] {
            names.push(format!("blk.{l}.{t}.weight"));
        }
    }
    let dims2 = [4096u64, 4096];
    let dims1 = [4096u64];
    let descs: Vec<TensorDesc> = names
        .iter()
        .map(|n| TensorDesc {
            name: n,
            dims: if n.contains("norm") { &dims1 } else { &dims2 },
            source: BF16,
        })
        .collect();
    let types = |ft| tensor_types(ft, &dense(16), &descs).unwrap();
    let of = |ts: &[GgmlType], name: &str| ts[names.iter().position(|n| n == name).unwrap()];
    let q4km = types(FileType::Q4_K_M);
    // Untied: output Q6_K, token_embd the default; norms keep their type.
    assert_eq!(of(&q4km, "output.weight"), Q6_K);
    assert_eq!(of(&q4km, "token_embd.weight"), Q4_K);
    assert_eq!(of(&q4km, "output_norm.weight"), BF16);
    // use_more_bits(i, 16): i < 2, i >= 14, (i - 2) % 3 == 2.
    let more = [0, 1, 4, 7, 10, 13, 14, 15];
    for l in 0..16 {
        let want = if more.contains(&l) { Q6_K } else { Q4_K };
        assert_eq!(of(&q4km, &format!("blk.{l}.attn_v.weight")), want, "{l}");
        assert_eq!(of(&q4km, &format!("blk.{l}.ffn_down.weight")), want, "{l}");
        assert_eq!(of(&q4km, &format!("blk.{l}.attn_q.weight")), Q4_K);
    }
    let q6 = types(FileType::Q6_K);
    assert!(q6
        .iter()
        .zip(&names)
        .all(|(t, n)| *t == if n.contains("norm") { BF16 } else { Q6_K }));
    let f16 = types(FileType::F16);
    assert_eq!(of(&f16, "output.weight"), F16);
    assert_eq!(of(&f16, "blk.3.attn_v.weight"), F16);
    let q80 = types(FileType::Q8_0);
    assert_eq!(of(&q80, "output.weight"), Q8_0);
    let q40 = types(FileType::Q4_0);
    assert_eq!(of(&q40, "output.weight"), Q6_K);
    assert_eq!(of(&q40, "blk.0.ffn_down.weight"), Q4_0);
    // Q3_K_M: the first two attn_v get Q5_K; attn_output would be Q4_K.
    let q3km = types(FileType::Q3_K_M);
    assert_eq!(of(&q3km, "blk.0.attn_v.weight"), Q5_K);
    assert_eq!(of(&q3km, "blk.2.attn_v.weight"), Q4_K);
    assert_eq!(of(&q3km, "blk.0.ffn_down.weight"), Q5_K);
    // Fallbacks for rows not a multiple of 256 (or of 32).
    let odd = [576u64, 100];
    let odder = [100u64, 100];
    let one = |ft, dims: &[u64]| {
        tensor_types(
            ft,
            &dense(16),
            &[TensorDesc {
                name: "blk.5.attn_q.weight",
                dims,
                source: F32,
            }],
        )
        .unwrap()[0]
    };
    assert_eq!(one(FileType::Q4_K_M, &odd), Q5_0);
    assert_eq!(one(FileType::Q5_K_M, &odd), Q5_1);
    assert_eq!(one(FileType::Q6_K, &odd), Q8_0);
    assert_eq!(one(FileType::Q2_K, &odd), Q4_0);
    assert_eq!(one(FileType::Q4_K_M, &odder), F16);
    assert_eq!(one(FileType::Q8_0, &odder), F16);
    assert_eq!(one(FileType::BF16, &odder), BF16);
    assert_eq!(FileType::from_name("q4_k_m"), Some(FileType::Q4_K_M));
    assert_eq!(FileType::Q4_K_M.id(), 15);
}

/// Metadata of every GGUF value type, arrays of numbers, strings, bools and
/// arrays; read_back.py checks the same values in gguf-py.
fn sample_metadata() -> Vec<(String, Value)> {
    vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.alignment".into(), Value::U32(64)),
        ("t.u8".into(), Value::U8(200)),
        ("t.i8".into(), Value::I8(-100)),
        ("t.u16".into(), Value::U16(60000)),
        ("t.i16".into(), Value::I16(-30000)),
        ("t.u32".into(), Value::U32(4_000_000_000)),
        ("t.i32".into(), Value::I32(-2_000_000_000)),
        ("t.u64".into(), Value::U64(1 << 60)),
        ("t.i64".into(), Value::I64(-(1 << 60))),
        ("t.f32".into(), Value::F32(1.5e-3)),
        ("t.f64".into(), Value::F64(-2.25e100)),
        ("t.bool".into(), Value::Bool(true)),
        ("t.string".into(), Value::String("héllo ▁wörld".into())),
        (
            "t.strings".into(),
            Value::Array(Array::Strings(vec!["<s>".into(), "".into(), "▁the".into()])),
        ),
        (
            "t.f32s".into(),
            Value::Array(Array::F32(vec![0.0, -1.0, 3.5])),
        ),
        ("t.i32s".into(), Value::Array(Array::I32(vec![1, -2, 3]))),
        ("t.u8s".into(), Value::Array(Array::U8(vec![1, 2, 255]))),
        (
            "t.bools".into(),
            Value::Array(Array::Bool(vec![true, false])),
        ),
        ("t.u64s".into(), Value::Array(Array::U64(vec![u64::MAX]))),
        ("t.empty".into(), Value::Array(Array::I64(vec![]))),
        (
            "t.nested".into(),
            Value::Array(Array::Arrays(vec![
                Array::I32(vec![7, 8]),
                Array::Strings(vec!["x".into()]),
            ])),
        ),
    ]
}

#[test]
fn written_file_reads_back() {
    use GgmlType::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    let norm: Vec<f32> = (0..576).map(|i| 1.0 + i as f32 * 1e-3).collect();
    let w = gaussian(256 * 6, 0.02, 99);
    let specs = vec![
        TensorSpec {
            name: "output_norm.weight".into(),
            dims: vec![576],
            ggml_type: F32,
        },
        TensorSpec {
            name: "blk.0.attn_q.weight".into(),
            dims: vec![256, 6],
            ggml_type: Q4_K,
        },
        TensorSpec {
            name: "blk.0.attn_k.weight".into(),
            dims: vec![256, 6],
            ggml_type: F16,
        },
        TensorSpec {
            name: "blk.0.ffn_down.weight".into(),
            dims: vec![512, 3],
            ggml_type: Q8_0,
        },
    ];
    let data = [
        quantize(F32, &norm, 576).unwrap(),
        quantize(Q4_K, &w, 256).unwrap(),
        quantize(F16, &w, 256).unwrap(),
        quantize(Q8_0, &w, 512).unwrap(),
    ];
    let meta = sample_metadata();
    let mut wr = GgufWriter::create(&path, &meta, &specs, false).unwrap();
    assert_eq!(wr.alignment(), 64);
    // Streamed in odd pieces that straddle tensors.
    let all: Vec<u8> = data.concat();
    for piece in all.chunks(1000) {
        wr.write_data(piece).unwrap();
    }
    wr.finish().unwrap();
    // Only the file itself is left (no temporary).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.data_offset() % 64, 0);
    assert_eq!(
        f.keys().collect::<Vec<_>>(),
        meta.iter().map(|m| m.0.as_str()).collect::<Vec<_>>()
    );
    for (k, v) in &meta {
        assert_eq!(f.value(k), Some(v), "{k}");
    }
    assert_eq!(f.tensors().len(), 4);
    for ((t, spec), bytes) in f.tensors().iter().zip(&specs).zip(&data) {
        assert_eq!(
            (&t.name, &t.dims, t.ggml_type),
            (&spec.name, &spec.dims, spec.ggml_type)
        );
        assert_eq!((t.offset - f.data_offset()) % 64, 0);
        assert_eq!(f.tensor_bytes(t), bytes.as_slice(), "{}", t.name);
    }
    assert_eq!(f.dequantize(&f.tensors()[0]).unwrap(), norm);
    let q = f.dequantize(&f.tensors()[1]).unwrap();
    assert_eq!(q, quants::dequantize(Q4_K, &data[1], w.len()).unwrap());
    let err = w
        .iter()
        .zip(&q)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err < 0.01, "{err}");
    // The file ends padded to the alignment.
    assert_eq!(std::fs::metadata(&path).unwrap().len() % 64, 0);

    // Never over an existing file unless asked.
    let e = GgufWriter::create(&path, &meta, &specs, false)
        .err()
        .unwrap();
    assert!(e.contains("exists"), "{e}");
    let mut wr = GgufWriter::create(&path, &[], &specs[..1], true).unwrap();
    wr.write_data(&data[0]).unwrap();
    wr.finish().unwrap();
    assert_eq!(GgufFile::open(&path).unwrap().tensors().len(), 1);
    // Unfinished or overfull data is an error; the temporary goes away.
    let other = dir.path().join("other.gguf");
    let mut wr = GgufWriter::create(&other, &[], &specs[..1], false).unwrap();
    wr.write_data(&data[0][..10]).unwrap();
    assert!(wr.finish().unwrap_err().contains("10 of its 2304 bytes"));
    let mut wr = GgufWriter::create(&other, &[], &specs[..1], false).unwrap();
    assert!(wr.write_data(&[0; 3000]).is_err());
    drop(wr);
    assert!(!other.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // Shapes that are not whole blocks, duplicates, bad alignment.
    let bad = TensorSpec {
        name: "x".into(),
        dims: vec![100, 2],
        ggml_type: Q4_K,
    };
    assert!(GgufWriter::create(&other, &[], &[bad], false).is_err());
    assert!(GgufWriter::create(&other, &[], &[specs[0].clone(), specs[0].clone()], false).is_err());
    let a = vec![("general.alignment".to_string(), Value::U32(48))];
    assert!(GgufWriter::create(&other, &a, &specs, false).is_err());

    // For read_back.py (gguf-py): the same file, kept where it can find it.
    if let Ok(keep) = std::env::var("FT_GGUF_WRITE_KEEP") {
        let mut wr = GgufWriter::create(Path::new(&keep), &meta, &specs, true).unwrap();
        wr.write_data(&all).unwrap();
        wr.finish().unwrap();
        let raw: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(format!("{keep}.weights.f32"), raw).unwrap();
    }
}
