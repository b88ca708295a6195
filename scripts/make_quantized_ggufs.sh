#!/usr/bin/env bash
# Real llama.cpp-written GGUFs of the K-quant and IQ4 types no downloadable
# file here has: llama-quantize (scripts/build_llama_cpp.sh) requantizes the
# real Gemma 3 270M Q4_K_M GGUF (scripts/fetch_gemma3.sh) and SmolLM2-135M
# Q4_1 (setup) into $CACHE/models/llama-quantized/:
#   gemma-3-270m-{q2_k,q3_k_m,q5_k_m,iq4_nl,iq4_xs}.gguf   llama.cpp's mixtures
#   smollm2-135m-{q2_k,q3_k_m,q5_k_m,iq4_xs}.gguf
#   {gemma-3-270m,smollm2-135m}-{q2_k,q3_k_s,q5_k_s}-pure.gguf   `--pure`: one type
#     wherever the rows allow it (the Q2_K mixture has no Q2_K tensor at all in
#     these small models: its mixture gives their few 256-multiple tensors Q3_K)
# `--allow-requantize`: the sources are already quantized, so these are
# requantizations (fine for testing a dequantizer; not models to ship).
# Tensors whose rows are not a multiple of 256 fall back to other types
# (llama.cpp's choice); `scripts/check_gguf_dequant.py FILE` lists the types
# each file ends up with. Idempotent: files already there are kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
QUANTIZE="$CACHE/llama.cpp/bin/llama-quantize"
OUT="$CACHE/models/llama-quantized"
GEMMA="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
SMOL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"

[[ -x "$QUANTIZE" ]] || bash "$ROOT/scripts/build_llama_cpp.sh"
[[ -f "$GEMMA" ]] || bash "$ROOT/scripts/fetch_gemma3.sh"
mkdir -p "$OUT"

quantize() { # source stem type [--pure]
  local dest="$OUT/$2-${3,,}${4:+-pure}.gguf"
  if [[ -f "$dest" ]]; then
    echo "$dest already there"
    return
  fi
  local start=$(date +%s)
  "$QUANTIZE" --allow-requantize ${4:-} "$1" "$dest.part" "$3" "$(nproc)" > "$dest.log" 2>&1 || {
    tail -20 "$dest.log" >&2
    rm -f "$dest.part"
    exit 1
  }
  mv "$dest.part" "$dest"
  echo "$dest: $(stat -c %s "$dest") bytes in $(( $(date +%s) - start )) s"
}

# F16 and BF16 too: real llama.cpp-written half-precision tensors.
for type in Q2_K Q3_K_M Q5_K_M IQ4_NL IQ4_XS F16 BF16; do
  quantize "$GEMMA" gemma-3-270m "$type"
done
for type in Q2_K Q3_K_S Q5_K_S; do
  quantize "$GEMMA" gemma-3-270m "$type" --pure
done
if [[ -f "$SMOL" ]]; then
  for type in Q2_K Q3_K_M Q5_K_M IQ4_XS; do
    quantize "$SMOL" smollm2-135m "$type"
  done
  for type in Q2_K Q3_K_S Q5_K_S; do
    quantize "$SMOL" smollm2-135m "$type" --pure
  done
else
  echo "warning: $SMOL is missing (make setup); SmolLM2 requantizations skipped" >&2
fi
