"""Float32 rows for the llama.cpp quantizer harness (harness.c).

Writes two FTQI files (see harness.c for the layout) and a JSON list of the
cases they hold:
  small.bin  the committed fixture's inputs: real weights from the two GGUFs
             in .cache/models (dequantized by gguf-py) and edge cases;
  big.bin    whole tensors of both models, a few million values, checked by
             tests/gguf_write.rs when .cache/gguf-quantize-reference is there.
Every row is 256 values (or a multiple), so every type can take it. Cases
whose names start with "float_" hold NaN, infinities and f16/bf16 rounding
ties; only F32, F16 and BF16 are compared on them.
"""

import json
import struct
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

SMOL, GEMMA, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
rng = np.random.default_rng(19)


def tensors(path):
    r = GGUFReader(path)
    return {t.name: t for t in r.tensors}


def deq(t):
    return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)


smol, gemma = tensors(SMOL), tensors(GEMMA)


def rows(values, n_rows, start=0, width=256):
    v = values[start : start + n_rows * width]
    assert v.size == n_rows * width, (v.size, n_rows, width)
    return v.reshape(n_rows, width)


def f16_edges():
    """f16 values, the ties halfway to the next half and one f32 ulp either
    side, over the whole range; NaNs, infinities, overflow bounds."""
    h = np.arange(0, 0x7C00, 41, dtype=np.uint16)
    lo = h.view(np.float16).astype(np.float32)
    hi = (h + 1).view(np.float16).astype(np.float32)
    mid = ((lo.astype(np.float64) + hi.astype(np.float64)) / 2).astype(np.float32)
    mb = mid.view(np.uint32)
    v = np.concatenate([lo, mid, (mb + 1).view(np.float32), (mb - 1).view(np.float32)])
    special = np.array(
        [0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF,
         0xFFFFFFFF, 0x7FFFE000, 0x00000001, 0x80000001, 0x007FFFFF, 0x33000000,
         0x33000001, 0x32FFFFFF, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001,
         0x7F7FFFFF, 0x387FC000, 0x387FE000, 0x38800000, 0x80000000, 0x00000000],
        dtype=np.uint32).view(np.float32)
    v = np.concatenate([v, -v, special])
    return v.astype(np.float32)


def bf16_edges():
    """bf16 ties (low 16 bits 0x8000) and their neighbours, random bits, NaNs
    with payloads in the dropped half."""
    r = rng.integers(0, 2**32, size=1024, dtype=np.uint64).astype(np.uint32)
    ties = (r & 0xFFFF0000) | 0x8000
    v = np.concatenate([r, ties, ties + 1, ties - 1,
                        np.array([0x7F800000, 0xFF800000, 0x7F800001, 0x7F80FFFF,
                                  0xFF810000, 0x7FFF8000, 0x7F7F8000, 0x7F7FFFFF],
                                 dtype=np.uint32)])
    return v.view(np.float32)


def pad256(v):
    n = -(-v.size // 256) * 256
    out = np.zeros(n, dtype=np.float32)
    out[: v.size] = v
    return out.reshape(-1, 256)


def synthetic():
    c = []
    g = rng.standard_normal
    c.append(("gaussian", (g((6, 256)) * 0.02).astype(np.float32)))
    c.append(("laplace_heavy_tail", rng.laplace(0, 0.05, (2, 256)).astype(np.float32)))
    c.append(("student_t3", (rng.standard_t(3, (2, 256)) * 0.03).astype(np.float32)))
    c.append(("zeros", np.zeros((1, 256), np.float32)))
    c.append(("constant_positive", np.full((1, 256), 0.37, np.float32)))
    c.append(("constant_negative", np.full((1, 256), -2.5, np.float32)))
    alt = np.tile(np.array([0.5, -0.5], np.float32), 128).reshape(1, 256)
    c.append(("alternating", alt))
    o = (g((2, 256)) * 0.01).astype(np.float32)
    o[0, 77] = 50.0
    o[1, 200] = -1000.0
    c.append(("single_outlier", o))
    c.append(("tiny_1e-30", (g((1, 256)) * 1e-30).astype(np.float32)))
    dec = np.repeat(10.0 ** -np.arange(10, 26), 16) * np.sign(g(256))
    c.append(("tiny_decades_1e-10_to_1e-25", dec.astype(np.float32).reshape(1, 256)))
    c.append(("f16_subnormal_scale", (g((1, 256)) * 1e-6).astype(np.float32)))
    c.append(("negative_only", -np.abs(g((2, 256)) * 0.1).astype(np.float32)))
    c.append(("positive_only", np.abs(g((1, 256)) * 0.1).astype(np.float32)))
    mags = np.repeat(10.0 ** rng.uniform(-6, 3, 32), 16).reshape(2, 256)
    c.append(("mixed_magnitudes", (g((2, 256)) * mags).astype(np.float32)))
    sp = np.zeros((1, 256), np.float32)
    sp[0, rng.choice(256, 9, replace=False)] = g(9) * 0.3
    c.append(("sparse", sp))
    ties = (rng.integers(-32, 32, (2, 256)) / 2.0 * 2.0**-5).astype(np.float32)
    c.append(("grid_ties", ties))
    c.append(("int_grid", (rng.integers(-8, 8, (1, 256)) * 0.125).astype(np.float32)))
    c.append(("large_3e4", (g((1, 256)) * 1e4).clip(-3e4, 3e4).astype(np.float32)))
    return c


def small_cases():
    c = []
    c.append(("smol.token_embd", rows(deq(smol["token_embd.weight"]), 4, 576 * 1000)))
    c.append(("smol.blk.0.attn_q", rows(deq(smol["blk.0.attn_q.weight"]), 3)))
    c.append(("smol.blk.5.ffn_down", rows(deq(smol["blk.5.ffn_down.weight"]), 3, 1536 * 7)))
    c.append(("smol.blk.0.attn_norm", rows(deq(smol["blk.0.attn_norm.weight"]), 2)))
    c.append(("gemma.token_embd_q8_0", rows(deq(gemma["token_embd.weight"]), 2, 640 * 5000)))
    c.append(("gemma.blk.0.attn_v_q8_0", rows(deq(gemma["blk.0.attn_v.weight"]), 2)))
    c.append(("gemma.blk.0.ffn_down_q6_k", rows(deq(gemma["blk.0.ffn_down.weight"]), 2)))
    c.append(("gemma.blk.3.attn_output_q4_k", rows(deq(gemma["blk.3.attn_output.weight"]), 2)))
    c.append(("gemma.blk.0.attn_q_q5_0", rows(deq(gemma["blk.0.attn_q.weight"]), 2)))
    c.append(("gemma.blk.0.ffn_norm_f32", rows(deq(gemma["blk.0.ffn_norm.weight"]), 2)))
    real = np.concatenate([c[0][1], c[6][1], c[7][1], c[2][1]])[:8]
    noisy = real * np.float32(1.0173) + (rng.standard_normal(real.shape) * 1e-3).astype(np.float32)
    c.append(("real_plus_noise", noisy.astype(np.float32)))
    c += synthetic()
    c.append(("float_f16_edges", pad256(f16_edges())))
    c.append(("float_bf16_edges", pad256(bf16_edges())))
    return c


def big_cases():
    c = []
    for prefix, ts in (("smol", smol), ("gemma", gemma)):
        for name in sorted(ts):
            if not name.startswith("blk.1."):
                continue
            v = deq(ts[name])
            v = v[: v.size // 256 * 256]
            c.append((f"{prefix}.{name}", v.reshape(-1, 256)))
        v = deq(ts["token_embd.weight"])[: 256 * 2048]
        c.append((f"{prefix}.token_embd[:524288]", v.reshape(-1, 256)))
    return c


def write(path, cases):
    with open(path, "wb") as f:
        f.write(b"FTQI")
        f.write(struct.pack("<I", len(cases)))
        for _, a in cases:
            a = np.ascontiguousarray(a, dtype=np.float32)
            f.write(struct.pack("<II", a.shape[1], a.shape[0]))
            f.write(a.tobytes())
    with open(path[:-4] + ".json", "w") as f:
        json.dump([{"name": n, "row_len": int(a.shape[1]), "n_rows": int(a.shape[0])} for n, a in cases], f, indent=1)
    print(f"{path}: {len(cases)} cases, {sum(a.size for _, a in cases)} values")


write(f"{OUT}/small.bin", small_cases())
write(f"{OUT}/big.bin", big_cases())
