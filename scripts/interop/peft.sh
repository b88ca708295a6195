#!/usr/bin/env bash
# `make check-peft`: trains LoRA and DoRA adapters with `ft` on a tiny random
# Llama, and LoRA on the real Gemma 3 270M Q4_K_M GGUF, exports them in PEFT's
# format (`ft export --format peft`), loads them with Hugging Face PEFT over
# transformers' model of the same base (for the GGUF: transformers' own
# dequantization of the file; in a virtualenv with PyPI's torch, transformers
# and peft), and compares logits with the engine's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
VENV="$CACHE/venv-fixtures"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! "$VENV/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "torch==2.15.0" "transformers==5.24.0" "peft==0.21.2" \
    gguf accelerate
fi
cd "$ROOT"
cargo build --quiet --bin ft --example tiny_model --example logits
target/debug/examples/tiny_model "$work" >/dev/null
model="$work/tiny-llama"
echo "[1, 40, 77, 120, 9, 15, 200, 33]" >"$work/ids.json"
for kind in lora dora; do
  flags=(--lora-rank 4 --lora-alpha 8)
  [ "$kind" = dora ] && flags+=(--dora)
  target/debug/ft train start "$model" "$work/train.jsonl" --iters 20 --batch-size 4 \
    --learning-rate 0.01 "${flags[@]}" --runs-dir "$work/runs-$kind" --json >/dev/null
  run="$(ls -d "$work"/runs-$kind/*/)"
  target/debug/ft export "$run" --format peft --output "$work/peft-$kind" >/dev/null
  target/debug/examples/logits "$model" "$run/adapters" <"$work/ids.json" >"$work/engine-$kind.json"
  "$VENV/bin/python" "$ROOT/scripts/interop/check_peft.py" "$model" "$work/peft-$kind" \
    "$work/engine-$kind.json" "$work/ids.json"
done

# The real Gemma 3 270M GGUF (K-quants), trained on the sample data.
gemma="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
bash "$ROOT/scripts/fetch_gemma3.sh" >/dev/null
target/debug/ft train start "$gemma" "$CACHE/data/chitchat/train.jsonl" --iters 6 --batch-size 2 \
  --max-length 128 --learning-rate 1e-3 --lora-rank 8 --lora-alpha 16 \
  --runs-dir "$work/runs-gemma" --json >/dev/null
run="$(ls -d "$work"/runs-gemma/*/)"
target/debug/ft export "$run" --format peft --output "$work/peft-gemma" >/dev/null
echo "[2, 818, 2255, 63937, 64222, 54264, 506, 31393]" >"$work/ids-gemma.json"
target/debug/examples/logits "$gemma" "$run/adapters" <"$work/ids-gemma.json" >"$work/engine-gemma.json"
"$VENV/bin/python" "$ROOT/scripts/interop/check_peft.py" "$gemma" "$work/peft-gemma" \
  "$work/engine-gemma.json" "$work/ids-gemma.json"
