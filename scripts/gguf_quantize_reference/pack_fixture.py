"""Packs the harness's small set into one safetensors file for
tests/gguf_write.rs: per case `NN.name.input` (F32, [rows, row_len]) and
`NN.name.TYPE` (U8, llama.cpp's bytes) for every type but F32 (whose bytes
are the input's, checked by run.sh). Cases named float_* keep F16 and BF16
only: their NaNs and infinities are no input for the block types."""

import json
import struct
import sys

import numpy as np

WORK, OUT = sys.argv[1], sys.argv[2]
TYPES = ["f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
BLOCK = {"f16": (1, 2), "bf16": (1, 2), "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22),
         "q5_1": (32, 24), "q8_0": (32, 34), "q2_K": (256, 84), "q3_K": (256, 110),
         "q4_K": (256, 144), "q5_K": (256, 176), "q6_K": (256, 210)}

meta = json.load(open(f"{WORK}/small.json"))
raw = open(f"{WORK}/small.bin", "rb").read()
refs = {t: open(f"{WORK}/small/{t}.bin", "rb").read() for t in TYPES}
offs = {t: 0 for t in TYPES}
at = 8
tensors = []
for i, c in enumerate(meta):
    rl, nr = c["row_len"], c["n_rows"]
    assert struct.unpack("<II", raw[at:at + 8]) == (rl, nr)
    at += 8
    n = rl * nr
    x = raw[at:at + 4 * n]
    at += 4 * n
    key = f"{i:02}.{c['name']}"
    tensors.append((f"{key}.input", "F32", [nr, rl], x))
    for t in TYPES:
        bs, ts = BLOCK[t]
        size = n // bs * ts
        b = refs[t][offs[t]:offs[t] + size]
        offs[t] += size
        if c["name"].startswith("float_") and bs > 1:
            continue
        tensors.append((f"{key}.{t.upper()}", "U8", [size], b))
assert at == len(raw) and all(offs[t] == len(refs[t]) for t in TYPES)

header, data = {}, b""
for name, dtype, shape, b in tensors:
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
    data += b
header["__metadata__"] = {"source": "llama.cpp ggml_quantize_chunk (no imatrix), llama-cpp-python 0.3.36 sdist; scripts/gguf_quantize_reference/run.sh"}
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(OUT, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
print(f"{OUT}: {len(meta)} cases, {len(tensors)} tensors, {8 + len(h) + len(data)} bytes")
