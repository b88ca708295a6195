//! FineTune's own GGUF reader (`finetune::gguf`) against gguf-py.
//!
//! `tests/fixtures/gguf/quants.gguf` holds a tensor of every supported type;
//! `quants_reference.safetensors` holds gguf-py's dequantization of each
//! (both written by scripts/fixtures/make_gguf_quants.py). Every value must
//! match bit for bit. The file is also truncated and corrupted at many
//! offsets: the reader must answer Ok or Err, never panic. The real models
//! in .cache/models are read in full when they are there.

use finetune::gguf::{quants, Array, GgmlType, GgufFile, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/gguf/quants.gguf")
}

/// The float32 tensors of a safetensors file: name → (shape, values).
fn read_safetensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut out = HashMap::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(info["dtype"], "F32", "{name}");
        let shape: Vec<usize> = info["shape"]
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
        let values = data[s..e]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(name.clone(), (shape, values));
    }
    out
}

#[test]
fn every_type_is_bit_equal_to_gguf_py() {
    let f = GgufFile::open(&fixture()).unwrap();
    let reference =
        read_safetensors(&root().join("tests/fixtures/gguf/quants_reference.safetensors"));
    assert_eq!(f.tensors().len(), reference.len());
    let mut per_type: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for t in f.tensors() {
        let (shape, want) = &reference[&t.name];
        let shape_i32: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
        assert_eq!(t.shape(), shape_i32, "shape of {}", t.name);
        assert_eq!(t.n_elements(), want.len(), "{}", t.name);
        let got = f.dequantize(t).unwrap();
        let mismatches: Vec<usize> = (0..want.len())
            .filter(|&i| got[i].to_bits() != want[i].to_bits())
            .collect();
        assert!(
            mismatches.is_empty(),
            "{} ({}): {} of {} values differ from gguf-py, first at {}: ours {:e}, gguf-py {:e}",
            t.name,
            t.ggml_type.name(),
            mismatches.len(),
            want.len(),
            mismatches[0],
            got[mismatches[0]],
            want[mismatches[0]]
        );
        let e = per_type.entry(t.ggml_type.name()).or_default();
        e.0 += 1;
        e.1 += want.len();
    }
    for ty in GgmlType::supported() {
        assert!(
            per_type.contains_key(ty.name()),
            "the fixture has no {} tensor",
            ty.name()
        );
    }
    for (ty, (n, v)) in &per_type {
        println!("{ty:7} {n} tensor(s), {v} values bit-equal to gguf-py");
    }
}

#[test]
fn metadata_getters() {
    let f = GgufFile::open(&fixture()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.path(), fixture().as_path());
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("fixture"));
    assert_eq!(f.get_str("fixture.string").unwrap(), Some("héllo, GGUF"));
    assert_eq!(f.get_str("no.such.key").unwrap(), None);
    assert_eq!(f.get_u64("fixture.u32").unwrap(), Some(4_000_000_000));
    assert_eq!(f.get_u64("fixture.u64").unwrap(), Some(1 << 40));
    assert_eq!(f.get_u64("fixture.u8").unwrap(), Some(200));
    assert_eq!(f.get_i64("fixture.i32").unwrap(), Some(-7));
    assert_eq!(f.get_i64("fixture.i64").unwrap(), Some(-(1 << 40)));
    assert_eq!(f.get_i64("fixture.i16").unwrap(), Some(-32768));
    assert_eq!(f.get_i64("fixture.i8").unwrap(), Some(-100));
    assert_eq!(f.get_u64("fixture.u16").unwrap(), Some(65535));
    assert_eq!(f.get_f32("fixture.f32").unwrap(), Some(0.125));
    assert_eq!(f.get_f32("fixture.f64").unwrap(), Some(2.5));
    assert_eq!(f.get_f32("fixture.i32").unwrap(), Some(-7.0));
    assert_eq!(f.get_bool("fixture.bool").unwrap(), Some(true));
    let strings: Vec<&str> = f
        .get_strings("fixture.strings")
        .unwrap()
        .unwrap()
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(strings, ["a", "", "ünïcode", "<s>"]);
    assert_eq!(
        f.get_i32_array("fixture.i32s").unwrap(),
        Some(vec![1, -2, 3, 2_000_000_000])
    );
    assert_eq!(
        f.get_i32_array("fixture.u8s").unwrap(),
        Some(vec![1, 2, 255])
    );
    assert_eq!(
        f.get_f32_array("fixture.f32s").unwrap(),
        Some(vec![0.5, -1.25, 3.0])
    );
    assert!(matches!(
        f.value("fixture.nested"),
        Some(Value::Array(Array::Arrays(a))) if a.len() == 2
    ));
    assert!(f.keys().any(|k| k == "fixture.source.q4_k.gemma3"));
    assert_eq!(
        f.keys().count(),
        f.keys().collect::<std::collections::HashSet<_>>().len()
    );

    // Wrong types are errors that name the file, the key and the type found.
    let e = f.get_str("fixture.u32").unwrap_err().to_string();
    assert!(
        e.contains("quants.gguf") && e.contains("fixture.u32") && e.contains("u32"),
        "{e}"
    );
    let e = f.get_u64("fixture.i32").unwrap_err().to_string();
    assert!(e.contains("fixture.i32") && e.contains("-7"), "{e}");
    let e = f.get_bool("fixture.strings").unwrap_err().to_string();
    assert!(
        e.contains("has type array of string (4 elements), expected a bool"),
        "{e}"
    );
    assert!(f.get_strings("fixture.i32s").is_err());
    assert!(f.get_i32_array("fixture.strings").is_err());
    assert!(f.get_i32_array("fixture.u64").is_err());
    assert!(f.get_f32("fixture.string").is_err());
    assert!(f.get_u64("fixture.f32").is_err());

    // Tensors.
    let t = f.tensor("f32.cube").unwrap();
    assert_eq!(t.dims, [64, 3, 2]);
    assert_eq!(t.shape(), [2, 3, 64]);
    assert_eq!(t.n_elements(), 384);
    assert_eq!(f.tensor_bytes(t).len(), 384 * 4);
    assert!(f.tensor("nope").is_none());
    let q = f.tensor("q4_k.gemma3").unwrap();
    assert_eq!(q.ggml_type, GgmlType::Q4_K);
    assert_eq!(q.n_bytes, 32 * 144);
    assert_eq!(q.offset % 32, 0);
    let counts: HashMap<GgmlType, usize> = f.type_counts().into_iter().collect();
    assert_eq!(counts[&GgmlType::F32], 3);
    assert_eq!(counts[&GgmlType::Q8_0], 2);
    assert_eq!(counts[&GgmlType::Q4_K], 1);
    assert_eq!(counts.values().sum::<usize>(), f.tensors().len());

    // Types.
    assert_eq!(GgmlType::from_id(12), GgmlType::Q4_K);
    assert_eq!(GgmlType::Q4_K.name(), "Q4_K");
    assert_eq!(
        (GgmlType::Q6_K.block_size(), GgmlType::Q6_K.type_size()),
        (256, 210)
    );
    assert!(!GgmlType::IQ2_XXS.is_supported());
    assert_eq!(GgmlType::from_id(999), GgmlType::Other(999));
}

#[test]
fn q4_0_q4_1_q8_0_as_mlx_affine() {
    let f = GgufFile::open(&fixture()).unwrap();
    let mut checked = 0;
    for t in f.tensors() {
        let bytes = f.tensor_bytes(t);
        let affine = quants::to_mlx_affine(t.ggml_type, bytes, t.n_elements());
        let Some(a) = affine else {
            assert!(!matches!(
                t.ggml_type,
                GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0
            ));
            continue;
        };
        let want = f.dequantize(t).unwrap();
        let bits = a.bits as usize;
        assert_eq!(a.group_size, 32);
        assert_eq!(a.packed.len(), want.len() * bits / 32);
        assert_eq!(a.scales.len(), want.len() / 32);
        assert_eq!(a.biases.len(), want.len() / 32);
        let per_word = 32 / bits;
        for (i, &w) in want.iter().enumerate() {
            let q = (a.packed[i / per_word] >> (bits * (i % per_word))) & ((1 << bits) - 1);
            let g = i / 32;
            let v = a.scales[g] * q as f32 + a.biases[g];
            // Exact: every product and sum is representable in f32 (only
            // the sign of a zero may differ: d · 8 - 8d is +0, d · 0 is -0
            // for d < 0).
            assert!(
                v.to_bits() == w.to_bits() || (v == 0.0 && w == 0.0),
                "{} value {i}: {v} vs {w}",
                t.name
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "Q4_0, Q4_1 and two Q8_0 tensors");
    assert!(quants::to_mlx_affine(GgmlType::Q4_K, &[0; 144], 256).is_none());
    assert!(quants::to_mlx_affine(GgmlType::Q4_0, &[0; 17], 32).is_none());
}

#[test]
fn quants_reject_wrong_sizes() {
    assert!(quants::dequantize(GgmlType::Q4_K, &[0; 143], 256).is_err());
    assert!(quants::dequantize(GgmlType::Q4_K, &[0; 144], 255).is_err());
    assert!(quants::dequantize(GgmlType::IQ2_XXS, &[0; 66], 256).is_err());
    assert_eq!(
        quants::dequantize(GgmlType::Q8_0, &[], 0).unwrap(),
        Vec::<f32>::new()
    );
    // f16 → f32 is exact, NaN payloads kept (as NumPy does).
    assert_eq!(quants::f16_to_f32(0x0001).to_bits(), 0x3380_0000);
    assert_eq!(quants::f16_to_f32(0x7c01).to_bits(), 0x7f80_2000);
    assert_eq!(quants::f16_to_f32(0xfc00), f32::NEG_INFINITY);
    assert_eq!(quants::f16_to_f32(0x3c00), 1.0);
}

/// Writes `bytes` and opens them; if that works, dequantizes the tensors
/// whose entries differ from `original`'s (or all, when `all`).
fn open_corrupt(path: &Path, bytes: &[u8], original: &GgufFile, all: bool) -> bool {
    std::fs::write(path, bytes).unwrap();
    match GgufFile::open(path) {
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains("corrupt.gguf"), "the error names the file: {m}");
            assert!(!m.contains(".rs:"), "no source locations: {m}");
            false
        }
        Ok(f) => {
            for t in f.tensors() {
                if all || original.tensor(&t.name) != Some(t) {
                    let _ = f.dequantize(t);
                    let _ = quants::to_mlx_affine(t.ggml_type, f.tensor_bytes(t), t.n_elements());
                }
            }
            let _ = f.type_counts();
            true
        }
    }
}

/// Truncates `good` at the given cuts and changes bytes at the given
/// offsets; returns (truncations, corruptions, corruptions that opened).
fn mangle(
    good: &[u8],
    path: &Path,
    cuts: impl Iterator<Item = usize>,
    flips: impl Iterator<Item = (usize, u8)>,
) -> (usize, usize, usize) {
    let original_path = path.with_extension("orig.gguf");
    std::fs::write(&original_path, good).unwrap();
    let original = GgufFile::open(&original_path).unwrap();
    let data_end = original
        .tensors()
        .iter()
        .map(|t| t.offset as usize + t.n_bytes)
        .max()
        .unwrap_or(0);
    let mut truncations = 0;
    for cut in cuts {
        let opened = open_corrupt(path, &good[..cut], &original, false);
        assert!(
            !opened || cut >= data_end,
            "truncated at {cut} of {} bytes, the file still opened",
            good.len()
        );
        truncations += 1;
    }
    let (mut changed, mut opened) = (0, 0);
    let mut bad = good.to_vec();
    let header_end = original.data_offset() as usize;
    for (at, v) in flips {
        if v == good[at] {
            continue;
        }
        bad[at] = v;
        opened += usize::from(open_corrupt(path, &bad, &original, at >= header_end));
        changed += 1;
        bad[at] = good[at];
    }
    (truncations, changed, opened)
}

/// A small valid GGUF: a few metadata types and four tensors.
fn small_gguf() -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend(3u32.to_le_bytes());
    v.extend(4u64.to_le_bytes());
    v.extend(4u64.to_le_bytes());
    let string = |v: &mut Vec<u8>, s: &str| {
        v.extend((s.len() as u64).to_le_bytes());
        v.extend(s.as_bytes());
    };
    string(&mut v, "general.architecture");
    v.extend(8u32.to_le_bytes());
    string(&mut v, "llama");
    string(&mut v, "general.alignment");
    v.extend(4u32.to_le_bytes());
    v.extend(16u32.to_le_bytes());
    string(&mut v, "tokenizer.ggml.tokens");
    v.extend(9u32.to_le_bytes());
    v.extend(8u32.to_le_bytes());
    v.extend(3u64.to_le_bytes());
    for s in ["<s>", "a", "bc"] {
        string(&mut v, s);
    }
    string(&mut v, "x.nested");
    v.extend(9u32.to_le_bytes());
    v.extend(9u32.to_le_bytes());
    v.extend(1u64.to_le_bytes());
    v.extend(5u32.to_le_bytes());
    v.extend(2u64.to_le_bytes());
    v.extend((-1i32).to_le_bytes());
    v.extend(7i32.to_le_bytes());
    // (name, dims, type id, bytes)
    let tensors: [(&str, &[u64], u32, usize); 4] = [
        ("w.q4_k", &[256], 12, 144),
        ("w.q8_0", &[32, 2], 8, 68),
        ("w.q5_0", &[32], 6, 22),
        ("w.f32", &[4, 2], 0, 32),
    ];
    let mut offset = 0u64;
    for (name, dims, ty, n) in tensors {
        string(&mut v, name);
        v.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            v.extend(d.to_le_bytes());
        }
        v.extend(ty.to_le_bytes());
        v.extend(offset.to_le_bytes());
        offset += (n as u64).next_multiple_of(16);
    }
    v.resize(v.len().next_multiple_of(16), 0);
    let mut x: u32 = 12345;
    for (_, _, _, n) in tensors {
        let start = v.len();
        for _ in 0..n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            v.push((x >> 16) as u8);
        }
        // Finite f16 scales where the blocks have them.
        if n == 144 {
            v[start..start + 4].copy_from_slice(&[0x00, 0x20, 0x00, 0x18]);
        }
        v.resize(v.len().next_multiple_of(16), 0);
    }
    v
}

#[test]
fn hostile_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.gguf");

    // A small valid file: cut at every byte, every byte changed four ways.
    let small = small_gguf();
    let f = {
        std::fs::write(&path, &small).unwrap();
        GgufFile::open(&path).unwrap()
    };
    assert_eq!(f.tensors().len(), 4);
    assert_eq!(
        f.get_strings("tokenizer.ggml.tokens")
            .unwrap()
            .unwrap()
            .len(),
        3
    );
    for t in f.tensors() {
        f.dequantize(t).unwrap();
    }
    let n = small.len();
    let flips = (0..n).flat_map(|at| {
        let b = small[at];
        [b ^ 0xff, b ^ 0x01, b ^ 0x80, 0x00, 0x7f].map(|v| (at, v))
    });
    let (t, c, o) = mangle(&small, &path, 0..n, flips);
    println!("small file ({n} bytes): {t} truncations rejected; {c} corruptions, {o} opened");

    // The fixture: cut and changed at sampled offsets of the header, and at
    // pseudo-random offsets of the data.
    let good = std::fs::read(fixture()).unwrap();
    let header_end = GgufFile::open(&fixture()).unwrap().data_offset() as usize;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let data_flips: Vec<(usize, u8)> = (0..200)
        .map(|_| {
            let r = next();
            (
                header_end + r as usize % (good.len() - header_end),
                (r >> 32) as u8,
            )
        })
        .collect();
    let flips = (0..header_end)
        .step_by(3)
        .map(|at| (at, good[at] ^ 0xff))
        .chain(data_flips);
    let cuts = (0..good.len()).filter(|&c| c % 7 == 0 && (c <= header_end || c % 97 == 0));
    let (t, c, o) = mangle(&good, &path, cuts, flips);
    println!("fixture: {t} truncations rejected; {c} corruptions, {o} opened");

    // Hand-made hostile headers.
    let header = |version: u32, n_tensors: u64, n_kv: u64, rest: &[u8]| {
        let mut v = b"GGUF".to_vec();
        v.extend(version.to_le_bytes());
        v.extend(n_tensors.to_le_bytes());
        v.extend(n_kv.to_le_bytes());
        v.extend(rest);
        v
    };
    let string = |s: &str| {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend(s.as_bytes());
        v
    };
    let tensor = |name: &str, dims: &[u64], ty: u32, offset: u64| {
        let mut v = string(name);
        v.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            v.extend(d.to_le_bytes());
        }
        v.extend(ty.to_le_bytes());
        v.extend(offset.to_le_bytes());
        v
    };
    let kv_u32 = |key: &str, value: u32| {
        let mut v = string(key);
        v.extend(4u32.to_le_bytes());
        v.extend(value.to_le_bytes());
        v
    };
    let expect_err = |bytes: Vec<u8>, words: &str| {
        std::fs::write(&path, &bytes).unwrap();
        let e = GgufFile::open(&path).expect_err(words).to_string();
        assert!(e.contains(words), "expected `{words}` in: {e}");
        assert!(e.contains("corrupt.gguf"), "{e}");
    };
    let mut pad = vec![0u8; 4096];
    expect_err(
        b"GGML\x03\0\0\0"
            .iter()
            .copied()
            .chain(pad.clone())
            .collect(),
        "not a GGUF file",
    );
    expect_err(header(1, 0, 0, &pad), "version 1");
    expect_err(header(3u32.swap_bytes(), 0, 0, &pad), "big-endian");
    expect_err(header(7, 0, 0, &pad), "version 7");
    expect_err(header(3, u64::MAX, 0, &pad), "tensors");
    expect_err(header(3, 0, 1 << 60, &pad), "metadata entries");
    // A string longer than the file.
    let mut big = (u64::MAX - 3).to_le_bytes().to_vec();
    big.extend([0u8; 64]);
    expect_err(
        header(3, 0, 1, &big),
        "length of the key of metadata entry 0",
    );
    // An array that declares more elements than bytes left.
    let mut arr = string("a.b");
    arr.extend(9u32.to_le_bytes());
    arr.extend(6u32.to_le_bytes());
    arr.extend((1u64 << 40).to_le_bytes());
    arr.extend([0u8; 64]);
    expect_err(header(3, 0, 1, &arr), "`a.b`");
    // Arrays nested too deep.
    let mut deep = string("deep");
    deep.extend(9u32.to_le_bytes());
    for _ in 0..20 {
        deep.extend(9u32.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
    }
    deep.extend([0u8; 256]);
    expect_err(header(3, 0, 1, &deep), "nests arrays");
    // An unknown value type.
    let mut vt = string("k");
    vt.extend(13u32.to_le_bytes());
    vt.extend([0u8; 64]);
    expect_err(header(3, 0, 1, &vt), "value type 13");
    // Duplicate keys.
    let mut dup = kv_u32("x", 1);
    dup.extend(kv_u32("x", 2));
    dup.extend([0u8; 64]);
    expect_err(header(3, 0, 2, &dup), "`x` appears more than once");
    // Bad alignments.
    for a in [0u32, 3, 48] {
        let mut al = kv_u32("general.alignment", a);
        al.extend([0u8; 64]);
        expect_err(header(3, 0, 1, &al), "general.alignment");
    }
    // Tensor entries.
    let t1 = |dims: &[u64], ty: u32, offset: u64| {
        let mut v = tensor("blk.0.attn_q.weight", dims, ty, offset);
        v.extend(&pad);
        header(3, 1, 0, &v)
    };
    expect_err(t1(&[32, 2, 1, 1, 1], 0, 0), "5 dimensions");
    expect_err(t1(&[], 0, 0), "0 dimensions");
    expect_err(t1(&[32, 0], 0, 0), "dimension 1 of 0");
    expect_err(t1(&[1 << 31, 1 << 31], 0, 0), "dimension 0");
    expect_err(
        t1(
            &[i32::MAX as u64, i32::MAX as u64, i32::MAX as u64, 8],
            0,
            0,
        ),
        "too many",
    );
    expect_err(
        t1(&[48], 12, 0),
        "not a multiple of the 256-value blocks of Q4_K",
    );
    expect_err(t1(&[32], 99, 0), "type id 99");
    expect_err(t1(&[32, 1000], 0, 0), "past the end of the file");
    expect_err(t1(&[32], 0, u64::MAX - 8), "past the end of the file");
    let mut two = tensor("w", &[32], 0, 0);
    two.extend(tensor("w", &[32], 0, 128));
    two.extend(&pad);
    expect_err(header(3, 2, 0, &two), "`w` appears more than once");
    // A known type FineTune cannot read opens, and names itself on use.
    std::fs::write(&path, t1(&[256], 16, 0)).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let t = &f.tensors()[0];
    let e = f.dequantize(t).unwrap_err().to_string();
    assert!(
        e.contains("tensor `blk.0.attn_q.weight` has type IQ2_XXS (id 16), which FineTune cannot read; supported: F32"),
        "{e}"
    );
    assert!(f.ensure_supported().is_err());
    // A short file, and an empty one.
    pad.truncate(3);
    expect_err(pad.clone(), "too short");
    expect_err(Vec::new(), "too short");
}

/// The counts of tensors per type of a real model file.
fn check_real_file(path: &Path, expected: &[(GgmlType, usize)]) {
    if !path.exists() {
        println!("skipped: {} is not there", path.display());
        return;
    }
    let start = std::time::Instant::now();
    let f = GgufFile::open(path).unwrap();
    let mut values = 0;
    for t in f.tensors() {
        let v = f.dequantize(t).unwrap();
        assert_eq!(v.len(), t.n_elements());
        values += v.len();
    }
    let mut counts = f.type_counts();
    counts.sort_by_key(|(t, _)| t.id());
    let mut want = expected.to_vec();
    want.sort_by_key(|(t, _)| t.id());
    assert_eq!(counts, want, "{}", path.display());
    println!(
        "{}: {} tensors, {values} values dequantized in {:.2?}",
        path.display(),
        f.tensors().len(),
        start.elapsed()
    );
}

#[test]
fn real_files_dequantize() {
    use GgmlType::*;
    let models = finetune::paths::cache_dir().join("models");
    check_real_file(
        &models.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        &[(F32, 61), (Q4_1, 210), (Q8_0, 1)],
    );
    check_real_file(
        &models.join("gemma-3-270m-q4_k_m.gguf"),
        &[(F32, 109), (Q5_0, 81), (Q8_0, 10), (Q4_K, 27), (Q6_K, 9)],
    );
}

/// For scripts/check_gguf_dequant.py: writes `name type sha256` of every
/// tensor's dequantized float32 bytes (little-endian) of GGUF_CHECK_FILE to
/// GGUF_CHECK_OUT, and the time `open` + dequantizing everything took.
#[test]
#[ignore = "run by scripts/check_gguf_dequant.py"]
fn dump_dequant_sha256() {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    let file = std::env::var("GGUF_CHECK_FILE").expect("GGUF_CHECK_FILE");
    let out = std::env::var("GGUF_CHECK_OUT").expect("GGUF_CHECK_OUT");
    let start = std::time::Instant::now();
    let f = GgufFile::open(Path::new(&file)).unwrap();
    let opened = start.elapsed();
    let mut all = Vec::with_capacity(f.tensors().len());
    for t in f.tensors() {
        all.push(f.dequantize(t).unwrap());
    }
    let elapsed = start.elapsed();
    let mut text = String::new();
    for (t, v) in f.tensors().iter().zip(&all) {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        writeln!(text, "{} {} {hex}", t.name, t.ggml_type.name()).unwrap();
    }
    std::fs::write(&out, text).unwrap();
    let n: usize = all.iter().map(Vec::len).sum();
    println!(
        "open: {opened:.3?}; open + dequantize {} tensors ({n} values): {elapsed:.3?}",
        f.tensors().len()
    );
}
