//! GGML's tensor block formats, decoded to `f32` in pure Rust (no MLX).
//!
//! Each decoder gives the same bits as gguf-py's `gguf.quants.dequantize`
//! (NumPy): the same `f16 → f32` conversion (exact, NaN payloads kept), the
//! same float operations in the same order (`d * q + m`, and in the K-quants
//! the sub-block scale `d * sc` first, then `· q`, then `- dmin * m`), and no
//! fused multiply-adds. `tests/gguf_quants.rs` checks this bit for bit.
//!
//! Big tensors are decoded in parallel over runs of blocks with rayon.

use super::GgmlType;
use rayon::prelude::*;

/// Elements decoded by one rayon task (rounded to whole blocks).
const ELEMENTS_PER_TASK: usize = 1 << 15;

/// IQ4_NL's non-linear 4-bit code book (also IQ4_XS's).
const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// E2M1 (FP4) values, doubled, as MXFP4 and NVFP4 store them.
const KVALUES_FP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// An IEEE half, widened exactly (as NumPy's `astype(np.float32)` does:
/// subnormals normalised, NaN payloads kept as they are).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    match exp {
        0 => {
            // Zero or subnormal: man · 2⁻²⁴, exact in f32.
            let v = man as f32 * (1.0 / 16_777_216.0);
            f32::from_bits(sign | v.to_bits())
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

#[inline]
fn half(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Decodes `n_elements` values of type `ty` from `bytes` (whole blocks,
/// exactly `n_elements / block_size * type_size` bytes).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, String> {
    let decode: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => block_f32,
        GgmlType::F16 => block_f16,
        GgmlType::BF16 => block_bf16,
        GgmlType::Q4_0 => block_q4_0,
        GgmlType::Q4_1 => block_q4_1,
        GgmlType::Q5_0 => block_q5_0,
        GgmlType::Q5_1 => block_q5_1,
        GgmlType::Q8_0 => block_q8_0,
        GgmlType::Q2_K => block_q2_k,
        GgmlType::Q3_K => block_q3_k,
        GgmlType::Q4_K => block_q4_k,
        GgmlType::Q5_K => block_q5_k,
        GgmlType::Q6_K => block_q6_k,
        GgmlType::IQ4_NL => block_iq4_nl,
        GgmlType::IQ4_XS => block_iq4_xs,
        GgmlType::TQ1_0 => block_tq1_0,
        GgmlType::TQ2_0 => block_tq2_0,
        GgmlType::MXFP4 => block_mxfp4,
        GgmlType::NVFP4 => block_nvfp4,
        other => {
            return Err(format!(
                "type {} cannot be read by FineTune; supported: {}",
                other.describe(),
                GgmlType::supported_names()
            ))
        }
    };
    let (bs, ts) = (ty.block_size(), ty.type_size());
    if n_elements % bs != 0 {
        return Err(format!(
            "{n_elements} values are not a whole number of {} blocks of {bs}",
            ty.name()
        ));
    }
    let n_blocks = n_elements / bs;
    let expected = n_blocks.checked_mul(ts);
    if expected != Some(bytes.len()) {
        return Err(format!(
            "{n_elements} values of type {} take {} bytes, but {} bytes were given",
            ty.name(),
            expected.map_or_else(|| "more than addressable".to_string(), |n| n.to_string()),
            bytes.len()
        ));
    }
    let mut out = vec![0f32; n_elements];
    let blocks_per_task = (ELEMENTS_PER_TASK / bs).max(1);
    out.par_chunks_mut(blocks_per_task * bs)
        .zip(bytes.par_chunks(blocks_per_task * ts))
        .for_each(|(dst, src)| {
            for (d, s) in dst.chunks_exact_mut(bs).zip(src.chunks_exact(ts)) {
                decode(s, d);
            }
        });
    Ok(out)
}

// Each decoder below takes one block (`type_size` bytes) and writes its
// `block_size` values.

fn block_f32(b: &[u8], y: &mut [f32]) {
    y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

fn block_f16(b: &[u8], y: &mut [f32]) {
    y[0] = half(b, 0);
}

fn block_bf16(b: &[u8], y: &mut [f32]) {
    y[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
}

/// Nibble `j` (0..32) of a 32-value block whose 16 bytes hold values j and
/// j + 16 in the low and high halves of byte j.
#[inline]
fn nibble32(qs: &[u8], j: usize) -> u8 {
    if j < 16 {
        qs[j] & 0x0f
    } else {
        qs[j - 16] >> 4
    }
}

// Q4_0: d (f16), 16 bytes of nibbles; x = d · (q - 8).
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qs = &b[2..18];
    for (j, v) in y.iter_mut().enumerate() {
        *v = d * f32::from(nibble32(qs, j) as i8 - 8);
    }
}

// Q4_1: d, m (f16), 16 bytes of nibbles; x = d · q + m.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let m = half(b, 2);
    let qs = &b[4..20];
    for (j, v) in y.iter_mut().enumerate() {
        *v = d * f32::from(nibble32(qs, j)) + m;
    }
}

// Q5_0: d, 32 high bits (u32), 16 bytes of low nibbles; x = d · (q - 16).
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for (j, v) in y.iter_mut().enumerate() {
        let q = nibble32(qs, j) | ((((qh >> j) & 1) as u8) << 4);
        *v = d * f32::from(q as i8 - 16);
    }
}

// Q5_1: d, m, 32 high bits, 16 bytes of low nibbles; x = d · q + m.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let m = half(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for (j, v) in y.iter_mut().enumerate() {
        let q = nibble32(qs, j) | ((((qh >> j) & 1) as u8) << 4);
        *v = d * f32::from(q) + m;
    }
}

// Q8_0: d, 32 signed bytes; x = q · d.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    for (v, &q) in y.iter_mut().zip(&b[2..34]) {
        *v = f32::from(q as i8) * d;
    }
}

/// The 2-bit field of value `e` (0..256) in a K-quant plane of 64 bytes:
/// two halves of 128 values, each 32 bytes with four 2-bit planes.
#[inline]
fn crumb256(qs: &[u8], e: usize) -> u8 {
    let (h, s, l) = (e / 128, (e % 128) / 32, e % 32);
    (qs[h * 32 + l] >> (2 * s)) & 3
}

// Q2_K: 16 scale bytes (4-bit scale, 4-bit min), 64 bytes of 2-bit values,
// d, dmin; x = (d · sc) · q - dmin · m, per 16 values.
fn block_q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = half(b, 80);
    let dmin = half(b, 82);
    for (g, out) in y.chunks_exact_mut(16).enumerate() {
        let dl = d * f32::from(scales[g] & 0x0f);
        let ml = dmin * f32::from(scales[g] >> 4);
        for (i, v) in out.iter_mut().enumerate() {
            let q = f32::from(crumb256(qs, g * 16 + i));
            *v = dl * q - ml;
        }
    }
}

// Q3_K: 32 bytes of high-bit mask, 64 bytes of 2-bit values, 12 bytes of
// 6-bit signed scales, d; x = (d · sc) · q, q = low2 - 4 · (1 - hbit).
fn block_q3_k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sc = &b[96..108];
    let d = half(b, 108);
    for (g, out) in y.chunks_exact_mut(16).enumerate() {
        let low = (sc[g % 8] >> (4 * (g / 8))) & 0x0f;
        let high = (sc[8 + g % 4] >> (2 * (g / 4))) & 0x03;
        let s = (low | (high << 4)) as i8 - 32;
        let dl = d * f32::from(s);
        for (i, v) in out.iter_mut().enumerate() {
            let e = g * 16 + i;
            let ql = crumb256(qs, e) as i8;
            let hbit = (hmask[e % 32] >> (e / 32)) & 1;
            let q = ql - (((hbit ^ 1) << 2) as i8);
            *v = dl * f32::from(q);
        }
    }
}

/// The 6-bit scales and mins of Q4_K and Q5_K's eight sub-blocks.
#[inline]
fn scale_min_k4(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 0x3f, s[j + 4] & 0x3f)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 2) & 0x30),
            (s[j + 4] >> 4) | ((s[j] >> 2) & 0x30),
        )
    }
}

/// Nibble of value `e` (0..256) in 128 bytes: four chunks of 32 bytes, each
/// holding 64 values (low nibbles first, then high).
#[inline]
fn nibble256(qs: &[u8], e: usize) -> u8 {
    let (sub, l) = (e / 32, e % 32);
    (qs[(sub / 2) * 32 + l] >> (4 * (sub % 2))) & 0x0f
}

// Q4_K: d, dmin, 12 bytes of scales/mins, 128 bytes of nibbles;
// x = (d · sc) · q - dmin · m, per 32 values.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let dmin = half(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (j, out) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(scales, j);
        let dl = d * f32::from(sc);
        let ml = dmin * f32::from(m);
        for (i, v) in out.iter_mut().enumerate() {
            *v = dl * f32::from(nibble256(qs, j * 32 + i)) - ml;
        }
    }
}

// Q5_K: as Q4_K with a fifth bit from 32 bytes of high bits.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let dmin = half(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (j, out) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(scales, j);
        let dl = d * f32::from(sc);
        let ml = dmin * f32::from(m);
        for (i, v) in out.iter_mut().enumerate() {
            let q = nibble256(qs, j * 32 + i) | (((qh[i] >> j) & 1) << 4);
            *v = dl * f32::from(q) - ml;
        }
    }
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed scales,
// d; x = (d · sc) · (q - 32), per 16 values.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = half(b, 208);
    for (g, out) in y.chunks_exact_mut(16).enumerate() {
        let dl = d * f32::from(scales[g] as i8);
        for (i, v) in out.iter_mut().enumerate() {
            let e = g * 16 + i;
            let (h, r) = (e / 128, e % 128);
            let low = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0f;
            let q = (low | (crumb256(qh, e) << 4)) as i8 - 32;
            *v = dl * f32::from(q);
        }
    }
}

// IQ4_NL: d, 16 bytes of nibbles indexing a non-linear code book; x = d · k[q].
fn block_iq4_nl(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let qs = &b[2..18];
    for (j, v) in y.iter_mut().enumerate() {
        *v = d * f32::from(KVALUES_IQ4NL[usize::from(nibble32(qs, j))]);
    }
}

// IQ4_XS: d, 16 bits of high scale bits, 4 bytes of low scale nibbles,
// 128 bytes of code-book nibbles; x = (d · (sc - 32)) · k[q], per 32 values.
fn block_iq4_xs(b: &[u8], y: &mut [f32]) {
    let d = half(b, 0);
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let scales_l = &b[4..8];
    let qs = &b[8..136];
    for (j, out) in y.chunks_exact_mut(32).enumerate() {
        let low = (scales_l[j / 2] >> (4 * (j % 2))) & 0x0f;
        let high = ((scales_h >> (2 * j)) & 0x03) as u8;
        let dl = d * f32::from((low | (high << 4)) as i8 - 32);
        let sub = &qs[j * 16..j * 16 + 16];
        for (i, v) in out.iter_mut().enumerate() {
            let q = (sub[i % 16] >> (4 * (i / 16))) & 0x0f;
            *v = dl * f32::from(KVALUES_IQ4NL[usize::from(q)]);
        }
    }
}

/// A base-3 digit packed the way TQ1_0 packs them: `(x · 3^k mod 256) · 3 >> 8`.
#[inline]
fn trit(x: u8, pow3: u8) -> i8 {
    let t = x.wrapping_mul(pow3);
    ((u16::from(t) * 3) >> 8) as i8 - 1
}

// TQ1_0: 48 bytes of 5 trits each, 4 bytes of 4 trits each, d; x = d · t.
fn block_tq1_0(b: &[u8], y: &mut [f32]) {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let qs = &b[0..48];
    let qh = &b[48..52];
    let d = half(b, 52);
    for (e, v) in y.iter_mut().enumerate() {
        let t = if e < 160 {
            trit(qs[e % 32], POW3[e / 32])
        } else if e < 240 {
            let i = e - 160;
            trit(qs[32 + i % 16], POW3[i / 16])
        } else {
            let i = e - 240;
            trit(qh[i % 4], POW3[i / 4])
        };
        *v = d * f32::from(t);
    }
}

// TQ2_0: 64 bytes of 2-bit values, d; x = d · (q - 1).
fn block_tq2_0(b: &[u8], y: &mut [f32]) {
    let qs = &b[0..64];
    let d = half(b, 64);
    for (e, v) in y.iter_mut().enumerate() {
        *v = d * f32::from(crumb256(qs, e) as i8 - 1);
    }
}

// MXFP4: one E8M0 exponent (halved), 16 bytes of FP4 nibbles; x = d · k[q].
fn block_mxfp4(b: &[u8], y: &mut [f32]) {
    let e = u32::from(b[0]);
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e - 1) << 23
    };
    let d = f32::from_bits(bits);
    let qs = &b[1..17];
    for (j, v) in y.iter_mut().enumerate() {
        *v = d * f32::from(KVALUES_FP4[usize::from(nibble32(qs, j))]);
    }
}

/// An unsigned E4M3 scale of NVFP4, halved (0 and 0x7F read as 0).
fn ue4m3_half(x: u8) -> f32 {
    if x == 0 || x == 0x7f {
        return 0.0;
    }
    let exp = i32::from((x >> 3) & 0x0f);
    let man = f32::from(x & 0x07);
    let raw = if exp == 0 {
        man * (1.0 / 512.0)
    } else {
        (1.0 + man / 8.0) * f32::from_bits(((exp - 7 + 127) as u32) << 23)
    };
    raw * 0.5
}

// NVFP4: 4 E4M3 scales, one per 16 values, 32 bytes of FP4 nibbles (each
// 8 bytes: 8 low nibbles then 8 high); x = d · k[q].
fn block_nvfp4(b: &[u8], y: &mut [f32]) {
    let qs = &b[4..36];
    for (s, out) in y.chunks_exact_mut(16).enumerate() {
        let d = ue4m3_half(b[s]);
        let sub = &qs[s * 8..s * 8 + 8];
        for (i, v) in out.iter_mut().enumerate() {
            let q = (sub[i % 8] >> (4 * (i / 8))) & 0x0f;
            *v = d * f32::from(KVALUES_FP4[usize::from(q)]);
        }
    }
}

/// A tensor in MLX's affine quantization: `w = scales[g] · q + biases[g]` for
/// the `group_size` values of group `g`, `q` unsigned of `bits` bits, packed
/// `32 / bits` to a `u32`, the first value in the lowest bits (as
/// `mlx.core.quantize` packs them).
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    pub bits: i32,
    pub group_size: i32,
    pub packed: Vec<u32>,
    pub scales: Vec<f32>,
    pub biases: Vec<f32>,
}

/// Q4_0, Q4_1 and Q8_0 as MLX's affine quantization (group 32, 4 or 8
/// bits), without a lossy round trip: Q4_0 is `d · q - 8d`, Q4_1 `d · q + m`,
/// Q8_0 `d · (q + 128) - 128d`. Every product and difference is exact in f32
/// for finite scales, so `scale · q + bias` gives back the dequantized value.
/// `None` for other types or when the sizes do not fit.
pub fn to_mlx_affine(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Option<Affine> {
    let (bits, ts) = match ty {
        GgmlType::Q4_0 => (4usize, 18usize),
        GgmlType::Q4_1 => (4, 20),
        GgmlType::Q8_0 => (8, 34),
        _ => return None,
    };
    if n_elements % 32 != 0 || bytes.len() != (n_elements / 32).checked_mul(ts)? {
        return None;
    }
    let n_blocks = n_elements / 32;
    let words_per_block = 32 * bits / 32;
    let mut packed = vec![0u32; n_blocks * words_per_block];
    let mut scales = vec![0f32; n_blocks];
    let mut biases = vec![0f32; n_blocks];
    let per_task = 1024;
    packed
        .par_chunks_mut(per_task * words_per_block)
        .zip(scales.par_chunks_mut(per_task))
        .zip(biases.par_chunks_mut(per_task))
        .zip(bytes.par_chunks(per_task * ts))
        .for_each(|(((words, sc), bi), src)| {
            for (((w, s), bias), b) in words
                .chunks_exact_mut(words_per_block)
                .zip(sc.iter_mut())
                .zip(bi.iter_mut())
                .zip(src.chunks_exact(ts))
            {
                let d = half(b, 0);
                match ty {
                    GgmlType::Q8_0 => {
                        *s = d;
                        *bias = -128.0 * d;
                        for (k, word) in w.iter_mut().enumerate() {
                            *word =
                                u32::from_le_bytes([0, 1, 2, 3].map(|i| b[2 + 4 * k + i] ^ 0x80));
                        }
                    }
                    _ => {
                        let (bias_value, qs) = if ty == GgmlType::Q4_0 {
                            (-8.0 * d, &b[2..18])
                        } else {
                            (half(b, 2), &b[4..20])
                        };
                        *s = d;
                        *bias = bias_value;
                        for (k, word) in w.iter_mut().enumerate() {
                            *word = (0..8).fold(0u32, |acc, i| {
                                acc | (u32::from(nibble32(qs, 8 * k + i)) << (4 * i))
                            });
                        }
                    }
                }
            }
        });
    Some(Affine {
        bits: bits as i32,
        group_size: 32,
        packed,
        scales,
        biases,
    })
}
