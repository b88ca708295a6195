#!/usr/bin/env bash
# llama.cpp's own quantizers as the reference for src/gguf/quantize.rs.
#
# Builds harness.c against ggml's sources from the llama-cpp-python sdist
# (already in .cache for the tokenizer vectors), feeds it real weights from
# the two GGUFs in .cache/models plus edge cases (make_inputs.py, run in
# .cache/venv-gguf), and writes
#   tests/fixtures/gguf/quantize_reference.safetensors  (small, committed)
#   .cache/gguf-quantize-reference/big{.bin,.json,/}      (millions of values,
#                                                          used by the test when there)
# then checks that write.rs's files read back in gguf-py (read_back.py).
#
# ggml is compiled as llama.cpp compiles ggml-base: -O2, NDEBUG, and no
# floating-point contraction (x86-64 without -march has no FMA; the flag
# makes that explicit on any host).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${FINETUNE_CACHE:-$ROOT/.cache}
SDIST=$CACHE/llama_cpp_python-0.3.36.tar.gz
WORK=$CACHE/gguf-quantize-reference
PY=$CACHE/venv-gguf/bin/python
SRC=$WORK/src/llama_cpp_python-0.3.36/vendor/llama.cpp/ggml
mkdir -p "$WORK/src" "$WORK/obj" "$WORK/gen"

if [ ! -f "$SRC/src/ggml-quants.c" ]; then
    tar -xzf "$SDIST" -C "$WORK/src" llama_cpp_python-0.3.36/vendor/llama.cpp/ggml
fi
sed 's/@GGML_VERSION@/0.0.0/; s/@GGML_BUILD_COMMIT@/sdist-0.3.36/' \
    "$SRC/src/ggml-version.h.in" > "$WORK/gen/ggml-version.h"

FLAGS=(-O2 -DNDEBUG -ffp-contract=off -I"$SRC/include" -I"$SRC/src" -I"$WORK/gen")
# ggml-base's sources that ggml_quantize_chunk needs to link.
for f in ggml.c ggml-quants.c ggml-alloc.c; do
    gcc -std=gnu11 "${FLAGS[@]}" -c "$SRC/src/$f" -o "$WORK/obj/$f.o"
done
for f in ggml-backend.cpp ggml-backend-meta.cpp ggml-threading.cpp; do
    g++ -std=c++17 "${FLAGS[@]}" -c "$SRC/src/$f" -o "$WORK/obj/$f.o"
done
gcc -std=gnu11 "${FLAGS[@]}" -c "$ROOT/scripts/gguf_quantize_reference/harness.c" -o "$WORK/obj/harness.o"
g++ "$WORK"/obj/*.o -o "$WORK/harness" -lm -lpthread

"$PY" "$ROOT/scripts/gguf_quantize_reference/make_inputs.py" \
    "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$CACHE/models/gemma-3-270m-q4_k_m.gguf" "$WORK"
for set in small big; do
    rm -rf "${WORK:?}/$set"; mkdir -p "$WORK/$set"
    "$WORK/harness" "$WORK/$set.bin" "$WORK/$set"
    # F32 must come back as the very bytes that went in.
    cmp <(tail -c +9 "$WORK/$set.bin" | "$PY" -c "
import sys, struct, json
data = sys.stdin.buffer.read(); meta = json.load(open('$WORK/$set.json')); at = 0; out = sys.stdout.buffer
for c in meta:
    at += 8; n = 4 * c['row_len'] * c['n_rows']; out.write(data[at:at + n]); at += n
") "$WORK/$set/f32.bin"
done
"$PY" "$ROOT/scripts/gguf_quantize_reference/pack_fixture.py" "$WORK" \
    "$ROOT/tests/fixtures/gguf/quantize_reference.safetensors"

# A file written by write.rs, read by gguf-py.
(cd "$ROOT" && FT_GGUF_WRITE_KEEP="$WORK/readback.gguf" \
    cargo nextest run -p finetune --test gguf_write -E 'test(written_file_reads_back)')
"$PY" "$ROOT/scripts/gguf_quantize_reference/read_back.py" "$WORK/readback.gguf"
