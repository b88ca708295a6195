//! `f32` → GGML block formats, byte for byte as llama.cpp's `llama-quantize`
//! writes them when it has no importance matrix.
//!
//! Without an importance matrix `ggml_quantize_chunk` runs ggml's reference
//! quantizers (`quantize_row_*_ref`), and those are what is reproduced here:
//! the same search for scales (`make_qx_quants`, `make_q3_quants`,
//! `make_qkx2_quants`), the same rounding (`nearest_int`'s magic-number
//! trick, C's truncating float → integer casts, `roundf`), and every `f32`
//! operation in the same order with no fused multiply-adds, since a single
//! differently rounded sum can flip a chosen scale. llama.cpp compiles ggml's
//! quantizers (ggml-base) without `-march` on x86-64, so no contraction
//! happens there either. `scripts/gguf_quantize_reference/` builds ggml's own
//! code into a harness and `tests/gguf_write.rs` checks these functions give
//! its bytes exactly.
//!
//! Rows with NaN or infinity are refused for the block types: ggml's result
//! then depends on undefined float → integer conversions, and llama-quantize
//! rejects the tensor anyway (its row validation fails on a non-finite
//! scale). A finite row whose scale overflows `f16` is refused for the same
//! reason. F32, F16 and BF16 convert every value, NaN and infinity included,
//! as ggml does.

use super::quants::f16_to_f32;
use super::GgmlType;
use rayon::prelude::*;

/// Values per K-quant super-block (QK_K).
const QK_K: usize = 256;
/// Below this a group's largest magnitude counts as zero (GROUP_MAX_EPS).
const GROUP_MAX_EPS: f32 = 1e-15;

/// The types [`quantize`] writes.
pub const QUANTIZABLE: [GgmlType; 13] = {
    use GgmlType::*;
    [
        F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
    ]
};

/// Encodes `values` (rows of `row_len` values, the last dimension first as
/// GGUF stores them) as type `ty`, as llama-quantize does without an
/// importance matrix. `row_len` must be a multiple of the type's block size
/// and `values.len()` a multiple of `row_len`.
pub fn quantize(ty: GgmlType, values: &[f32], row_len: usize) -> Result<Vec<u8>, String> {
    if !QUANTIZABLE.contains(&ty) {
        return Err(format!("FineTune cannot quantize to {}", ty.describe()));
    }
    let block = ty.block_size();
    if row_len == 0 || row_len % block != 0 {
        return Err(format!(
            "a row of {row_len} values cannot be stored as {ty}: its blocks hold {block} values"
        ));
    }
    if values.len() % row_len != 0 {
        return Err(format!(
            "{} values are not whole rows of {row_len}",
            values.len()
        ));
    }
    let n_blocks = values.len() / block;
    let size = ty.type_size();
    let mut out = vec![0u8; n_blocks * size];
    if block > 1 {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "value {i} ({}) is not finite; {ty} blocks cannot hold it",
                values[i]
            ));
        }
    }
    let encode: fn(&[f32], &mut [u8]) = match ty {
        GgmlType::F32 => |x, y| y.copy_from_slice(&x[0].to_le_bytes()),
        GgmlType::F16 => |x, y| y.copy_from_slice(&f32_to_f16(x[0]).to_le_bytes()),
        GgmlType::BF16 => |x, y| y.copy_from_slice(&f32_to_bf16(x[0]).to_le_bytes()),
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
        _ => unreachable!("checked against QUANTIZABLE"),
    };
    // Blocks are independent: quantize runs of them in parallel (4096 is a
    // multiple of every block size here).
    let per_task = 4096;
    values
        .par_chunks(per_task)
        .zip(out.par_chunks_mut(per_task / block * size))
        .for_each(|(xs, ys)| {
            for (x, y) in xs.chunks_exact(block).zip(ys.chunks_exact_mut(size)) {
                encode(x, y);
            }
        });
    if block > 1 {
        check_scales(ty, &out)?;
    }
    Ok(out)
}

/// Byte offsets of the `f16` scales in one block of `ty`.
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

/// Refuses blocks whose scale became infinite in `f16` (llama-quantize's
/// row validation refuses them too).
fn check_scales(ty: GgmlType, bytes: &[u8]) -> Result<(), String> {
    let offsets = scale_offsets(ty);
    for (i, b) in bytes.chunks_exact(ty.type_size()).enumerate() {
        for &at in offsets {
            let h = u16::from_le_bytes([b[at], b[at + 1]]);
            if h & 0x7c00 == 0x7c00 {
                return Err(format!(
                    "block {i}'s scale overflows f16 as {ty}: its values are too large"
                ));
            }
        }
    }
    Ok(())
}

/// IEEE half, rounded to nearest even; NaN becomes the quiet NaN 0x7e00
/// with its sign (payload dropped), as ggml's conversion does.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7fff_ffff;
    if a > 0x7f80_0000 {
        return sign | 0x7e00;
    }
    // 65520 is halfway between the largest half (65504) and 2^16: ties go
    // to the even neighbour, which is infinity.
    if a >= 0x477f_f000 {
        return sign | 0x7c00;
    }
    let e = (a >> 23) as i32 - 127;
    if e >= -14 {
        // Normal half: keep 10 of the 23 mantissa bits, round the other 13.
        let m = a & 0x7f_ffff;
        let mut h = (((e + 15) as u32) << 10) | (m >> 13);
        let rest = m & 0x1fff;
        if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
            h += 1; // a carry into the exponent is still the right half
        }
        return sign | h as u16;
    }
    // Subnormal half (units of 2^-24) or zero. m · 2^(e-23) = m · 2^(e+1)
    // units, so shift right by -(e+1) >= 14 and round.
    if a < 0x0080_0000 {
        return sign; // f32 subnormals are far below half a unit
    }
    let m = (a & 0x7f_ffff) | 0x80_0000;
    let shift = (-(e + 1)) as u32;
    if shift > 24 {
        return sign; // below half of the smallest subnormal
    }
    let q = m >> shift;
    let rest = m & ((1 << shift) - 1);
    let halfway = 1 << (shift - 1);
    let q = if rest > halfway || (rest == halfway && q & 1 == 1) {
        q + 1
    } else {
        q
    };
    sign | q as u16
}

/// bfloat16, rounded to nearest even; NaN keeps its top bits and is made
/// quiet (bit 6 set), as ggml's conversion does.
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

fn put_half(y: &mut [u8], at: usize, v: f32) {
    y[at..at + 2].copy_from_slice(&f32_to_f16(v).to_le_bytes());
}

/// ggml's `nearest_int`: adding 1.5 · 2^23 leaves round-half-even(x) in the
/// low mantissa bits (valid for |x| <= 2^22, as in ggml; beyond that ggml
/// gives the same wrapped value, which this reproduces).
#[inline]
fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// C's float → integer cast (truncation) for values well inside `i32`.
#[inline]
fn trunc_i32(x: f32) -> i32 {
    x as i32
}

/// The value of largest magnitude (the first one when tied) and that
/// magnitude.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

// Q4_0: d = signed absmax / -8, q = min(15, trunc(x / d + 8.5)).
fn block_q4_0(x: &[f32], y: &mut [u8]) {
    let (max, _) = signed_absmax(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_half(y, 0, d);
    for j in 0..16 {
        let q0 = trunc_i32(x[j] * id + 8.5).min(15) as u8;
        let q1 = trunc_i32(x[j + 16] * id + 8.5).min(15) as u8;
        y[2 + j] = q0 | (q1 << 4);
    }
}

// Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)).
fn block_q4_1(x: &[f32], y: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_half(y, 0, d);
    put_half(y, 2, min);
    for j in 0..16 {
        let q0 = trunc_i32((x[j] - min) * id + 0.5).min(15) as u8;
        let q1 = trunc_i32((x[j + 16] - min) * id + 0.5).min(15) as u8;
        y[4 + j] = q0 | (q1 << 4);
    }
}

// Q5_0: d = signed absmax / -16, q = min(31, trunc(x / d + 16.5)); the fifth
// bits go to a 32-bit mask.
fn block_q5_0(x: &[f32], y: &mut [u8]) {
    let (max, _) = signed_absmax(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_half(y, 0, d);
    let mut qh = 0u32;
    for j in 0..16 {
        let q0 = trunc_i32(x[j] * id + 16.5).min(31) as u32;
        let q1 = trunc_i32(x[j + 16] * id + 16.5).min(31) as u32;
        y[6 + j] = ((q0 & 0x0f) | ((q1 & 0x0f) << 4)) as u8;
        qh |= ((q0 >> 4) & 1) << j;
        qh |= ((q1 >> 4) & 1) << (j + 16);
    }
    y[2..6].copy_from_slice(&qh.to_le_bytes());
}

// Q5_1: d = (max - min) / 31, m = min, q = trunc((x - min) / d + 0.5) (no
// clamp in ggml; the value cannot pass 31).
fn block_q5_1(x: &[f32], y: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_half(y, 0, d);
    put_half(y, 2, min);
    let mut qh = 0u32;
    for j in 0..16 {
        // (uint8_t) of a float: truncation, kept to 8 bits.
        let q0 = u32::from(trunc_i32((x[j] - min) * id + 0.5) as u8);
        let q1 = u32::from(trunc_i32((x[j + 16] - min) * id + 0.5) as u8);
        y[8 + j] = ((q0 & 0x0f) | ((q1 & 0x0f) << 4)) as u8;
        qh |= ((q0 >> 4) & 1) << j;
        qh |= ((q1 >> 4) & 1) << (j + 16);
    }
    y[4..8].copy_from_slice(&qh.to_le_bytes());
}

// Q8_0: d = absmax / 127, q = roundf(x / d) (half away from zero).
fn block_q8_0(x: &[f32], y: &mut [u8]) {
    let mut amax = 0.0f32;
    for &v in x {
        amax = if amax > v.abs() { amax } else { v.abs() };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_half(y, 0, d);
    for j in 0..32 {
        y[2 + j] = ((x[j] * id).round() as i32) as i8 as u8;
    }
}

/// ggml's `make_qx_quants` without weights: a symmetric scale for `x`, the
/// levels (offset by `nmax`) in `l`. `rmse_type` 1 weighs errors by x².
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8], rmse_type: i32) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = -nmaxf / max;
    let clamp = |v: i32| v.clamp(-nmax, nmax - 1);
    if rmse_type == 0 {
        for (li, &xi) in l.iter_mut().zip(x) {
            *li = (nmax + clamp(nearest_int(iscale * xi))) as i8;
        }
        return 1.0 / iscale;
    }
    let weight = |xi: f32| -> f32 {
        match rmse_type {
            1 => xi * xi,
            2 => 1.0,
            3 => xi.abs(),
            _ => xi.abs().sqrt(),
        }
    };
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (li, &xi) in l.iter_mut().zip(x) {
        let q = clamp(nearest_int(iscale * xi));
        *li = (q + nmax) as i8;
        let w = weight(xi);
        let qf = q as f32;
        sumlx += w * xi * qf;
        suml2 += w * qf * qf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &xi in x {
            let qf = clamp(nearest_int(iscale * xi)) as f32;
            let w = weight(xi);
            sumlx += w * xi * qf;
            suml2 += w * qf * qf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &xi) in l.iter_mut().zip(x) {
                *li = (nmax + clamp(nearest_int(iscale * xi))) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `make_q3_quants` with `do_rmse`: a symmetric scale refined by
/// moving one level at a time while the x²-weighted fit improves.
fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let clamp = |v: i32| v.clamp(-nmax, nmax - 1);
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (li, &xi) in l.iter_mut().zip(x) {
        let q = clamp(nearest_int(iscale * xi));
        *li = q as i8;
        let w = xi * xi;
        sumlx += w * xi * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..x.len() {
            let xi = x[i];
            let w = xi * xi;
            let li = f32::from(l[i]);
            let mut slx = sumlx - w * xi * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = clamp(nearest_int(xi * sl2 / slx));
                if new_l != i32::from(l[i]) {
                    let nl = new_l as f32;
                    slx += w * xi * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for li in l.iter_mut() {
        *li += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// ggml's `make_qkx2_quants`: an affine fit x ≈ scale · l - min with l in
/// 0..=nmax, searched over `nstep + 1` trial scales, errors weighed by
/// `weights` (absolute errors when `use_mad`). Returns (scale, min) with
/// min >= 0 being subtracted.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * f32::from(l[i]) + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let w = weights[i];
            let qf = q as f32;
            sum_l += w * qf;
            sum_l2 += w * qf * qf;
            sum_xl += w * qf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

// Q2_K: sixteen groups of 16, each an affine 2-bit fit (absolute errors
// weighed by |x|); the group scales and mins quantized to 4 bits against the
// largest of each.
fn block_q2_k(x: &[f32], y: &mut [u8]) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0.0f32; 16];
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    let q4scale = 15.0f32;
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = v.abs();
        }
        let (s, m) = make_qkx2_quants(
            3,
            xs,
            &weights,
            &mut l[16 * j..16 * j + 16],
            &mut laux,
            -0.5,
            0.1,
            15,
            true,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let (sc, rest) = y.split_at_mut(16);
    if max_scale > 0.0 {
        let iscale = q4scale / max_scale;
        for j in 0..16 {
            sc[j] = nearest_int(iscale * scales[j]) as u8;
        }
        put_half(rest, 64, max_scale / q4scale);
    } else {
        sc.fill(0);
        put_half(rest, 64, 0.0);
    }
    if max_min > 0.0 {
        let iscale = q4scale / max_min;
        for j in 0..16 {
            sc[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        put_half(rest, 66, max_min / q4scale);
    } else {
        put_half(rest, 66, 0.0);
    }
    let dd = f16_to_f32(u16::from_le_bytes([rest[64], rest[65]]));
    let dmin = f16_to_f32(u16::from_le_bytes([rest[66], rest[67]]));
    for j in 0..16 {
        let d = dd * f32::from(sc[j] & 0x0f);
        if d == 0.0 {
            continue;
        }
        let dm = dmin * f32::from(sc[j] >> 4);
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&l, &mut rest[..64]);
}

/// 256 two-bit values into 64 bytes: byte `l` of each 32-byte chunk holds
/// values l, l+32, l+64, l+96 of that chunk's 128.
fn pack_2bit(l: &[u8], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for k in 0..32 {
            qs[j / 4 + k] =
                l[j + k] | (l[j + k + 32] << 2) | (l[j + k + 64] << 4) | (l[j + k + 96] << 6);
        }
    }
}

// Q3_K: sixteen groups of 16, symmetric 3-bit levels from make_q3_quants;
// the signed group scales quantized to 6 bits against the largest.
fn block_q3_k(x: &[f32], y: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
    for j in 0..16 {
        scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
        let s = scales[j].abs();
        if s > amax {
            amax = s;
            max_scale = scales[j];
        }
    }
    let (hmask, rest) = y.split_at_mut(32);
    let (qs, rest) = rest.split_at_mut(64);
    let (sc, dbytes) = rest.split_at_mut(12);
    sc.fill(0);
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..16 {
            // int8_t l = nearest_int(...), clamped to -32..=31, then + 32.
            let q = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
            let q = q as u8;
            if j < 8 {
                sc[j] = q & 0x0f;
            } else {
                sc[j - 8] |= (q & 0x0f) << 4;
            }
            sc[j % 4 + 8] |= (q >> 4) << (2 * (j / 4));
        }
        put_half(dbytes, 0, 1.0 / iscale);
    } else {
        put_half(dbytes, 0, 0.0);
    }
    let dd = f16_to_f32(u16::from_le_bytes([dbytes[0], dbytes[1]]));
    for j in 0..16 {
        let low = if j < 8 { sc[j] & 0x0f } else { sc[j - 8] >> 4 };
        let s = (low | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8 - 32;
        let d = dd * f32::from(s);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int(x[16 * j + ii] / d).clamp(-4, 3) as i8 + 4;
        }
    }
    // The high bit of value j goes to bit j / 32 of hmask[j % 32].
    hmask.fill(0);
    let mut lu = [0u8; QK_K];
    for j in 0..QK_K {
        let mut v = l[j] as u8;
        if v > 3 {
            hmask[j % 32] |= 1 << (j / 32);
            v -= 4;
        }
        lu[j] = v;
    }
    pack_2bit(&lu, qs);
}

/// Q4_K/Q5_K's eight 6-bit scales and mins into 12 bytes (the inverse of
/// get_scale_min_k4).
fn pack_scales_k4(ls: &[u8; 8], lm: &[u8; 8], s: &mut [u8]) {
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
}

fn scale_min_k4(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The shared half of Q4_K and Q5_K: eight groups of 32, each an affine fit
/// weighed by rms(x) + |x|, scales and mins to 6 bits against the largest;
/// writes d, dmin and the scales to `y[0..16]` and returns the levels.
fn k4_levels(x: &[f32], y: &mut [u8], nmax: i32, rmin: f32, nstep: i32) -> [u8; QK_K] {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (s, m) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut laux,
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        // uint8_t ls = nearest_int(...): kept to 8 bits, then capped at 63.
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    pack_scales_k4(&ls, &lm, &mut y[4..16]);
    put_half(y, 0, max_scale / 63.0);
    put_half(y, 2, max_min / 63.0);
    let dd = f16_to_f32(u16::from_le_bytes([y[0], y[1]]));
    let dmin = f16_to_f32(u16::from_le_bytes([y[2], y[3]]));
    for j in 0..8 {
        let (sc, m) = scale_min_k4(&y[4..16], j);
        let d = dd * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = dmin * f32::from(m);
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax) as u8;
        }
    }
    l
}

// Q4_K: d, dmin, 12 scale bytes, then 128 bytes: each 32-byte chunk holds
// two groups of 32, the first in the low nibbles.
fn block_q4_k(x: &[f32], y: &mut [u8]) {
    let l = k4_levels(x, y, 15, -1.0, 20);
    let qs = &mut y[16..144];
    for (c, j) in (0..QK_K).step_by(64).enumerate() {
        for k in 0..32 {
            qs[32 * c + k] = l[j + k] | (l[j + k + 32] << 4);
        }
    }
}

// Q5_K: as Q4_K with 5-bit levels; the fifth bit of value 64·c + k goes to
// bit 2c of qh[k], that of 64·c + 32 + k to bit 2c + 1.
fn block_q5_k(x: &[f32], y: &mut [u8]) {
    let l = k4_levels(x, y, 31, -0.5, 15);
    let (qh, qs) = y[16..176].split_at_mut(32);
    qh.fill(0);
    for (c, n) in (0..QK_K).step_by(64).enumerate() {
        for j in 0..32 {
            let mut l1 = l[n + j];
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= 1 << (2 * c);
            }
            let mut l2 = l[n + j + 32];
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= 2 << (2 * c);
            }
            qs[32 * c + j] = l1 | (l2 << 4);
        }
    }
}

// Q6_K: sixteen groups of 16, symmetric 6-bit levels from make_qx_quants
// (x²-weighted), signed 8-bit group scales against the largest.
fn block_q6_k(x: &[f32], y: &mut [u8]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs) = (0.0f32, 0.0f32);
    for ib in 0..16 {
        let s = make_qx_quants(
            32,
            &x[16 * ib..16 * ib + 16],
            &mut l[16 * ib..16 * ib + 16],
            1,
        );
        scales[ib] = s;
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = s;
        }
    }
    if max_abs < GROUP_MAX_EPS {
        y.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    put_half(y, 208, 1.0 / iscale);
    for ib in 0..16 {
        y[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    let dd = f16_to_f32(u16::from_le_bytes([y[208], y[209]]));
    for j in 0..16 {
        let d = dd * f32::from(y[192 + j] as i8);
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int(x[16 * j + ii] / d).clamp(-32, 31) as i8 + 32;
        }
    }
    let (ql, rest) = y.split_at_mut(128);
    let qh = &mut rest[..64];
    for (c, j) in (0..QK_K).step_by(128).enumerate() {
        for k in 0..32 {
            let q = |o: usize| l[j + k + o] as u8;
            ql[64 * c + k] = (q(0) & 0x0f) | ((q(64) & 0x0f) << 4);
            ql[64 * c + k + 32] = (q(32) & 0x0f) | ((q(96) & 0x0f) << 4);
            qh[32 * c + k] =
                (q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6);
        }
    }
}
