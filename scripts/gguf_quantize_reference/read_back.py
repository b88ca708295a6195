"""Reads the GGUF that tests/gguf_write.rs (written_file_reads_back) leaves
at $FT_GGUF_WRITE_KEEP with gguf-py's GGUFReader and checks every key,
value, tensor and the quantized tensors' dequantization (gguf-py's own)
against what the test wrote. Run: python read_back.py FILE"""

import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize

path = sys.argv[1]
r = GGUFReader(path)
expected = {
    "general.architecture": "llama", "general.alignment": 64, "t.u8": 200, "t.i8": -100,
    "t.u16": 60000, "t.i16": -30000, "t.u32": 4_000_000_000, "t.i32": -2_000_000_000,
    "t.u64": 1 << 60, "t.i64": -(1 << 60), "t.f32": np.float32(1.5e-3), "t.f64": -2.25e100,
    "t.bool": True, "t.string": "héllo ▁wörld", "t.strings": ["<s>", "", "▁the"],
    "t.f32s": [0.0, -1.0, 3.5], "t.i32s": [1, -2, 3], "t.u8s": [1, 2, 255], "t.bools": [True, False],
    "t.u64s": [2**64 - 1], "t.empty": [], "t.nested": [[7, 8], ["x"]],
}
types = {"t.u8": GGUFValueType.UINT8, "t.i8": GGUFValueType.INT8, "t.f64": GGUFValueType.FLOAT64,
         "t.u64": GGUFValueType.UINT64, "t.bool": GGUFValueType.BOOL, "t.nested": GGUFValueType.ARRAY}
keys = [k for k in r.fields if not k.startswith("GGUF.")]
assert keys == list(expected), keys
for k, v in expected.items():
    f = r.fields[k]
    got = f.contents()
    if k == "t.nested":
        # gguf-py flattens arrays of arrays in contents() (and shows the inner
        # string's bytes): [[7, 8], ["x"]] comes out as [7, 8, ord("x")].
        v = [7, 8, ord("x")]
    assert got == v, (k, got, v)
    if k in types:
        assert f.types[0] == types[k], (k, f.types)
print(f"{len(expected)} keys and values equal")

assert r.alignment == 64 and r.data_offset % 64 == 0
w = np.fromfile(path + ".weights.f32", dtype=np.float32)
names = ["output_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_down.weight"]
kinds = ["F32", "Q4_K", "F16", "Q8_0"]
assert [t.name for t in r.tensors] == names
for t, kind in zip(r.tensors, kinds):
    assert t.tensor_type.name == kind, (t.name, t.tensor_type)
    assert (t.data_offset - r.data_offset) % 64 == 0
    x = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
    if kind == "F32":
        assert np.array_equal(x, 1 + np.arange(576, dtype=np.float32) * np.float32(1e-3))
    else:
        err = np.abs(x - w).max()
        bound = {"Q4_K": 0.01, "F16": 1e-4, "Q8_0": 1e-3}[kind]
        assert err < bound, (t.name, err)
        print(f"{t.name} {kind}: gguf-py dequantizes within {err:.2e} of the input")
print("gguf-py reads the file FineTune wrote:", path)
