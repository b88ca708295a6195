#!/usr/bin/env bash
# Engine-only measurements on this machine (release build), as recorded in
# BENCHMARKS.md: matmul speed, load time and generation speed of the default
# model, one LoRA training run on the sample data, and the step profile.
# Not the side-by-side benchmark against mlx_lm / PyTorch (issue: make bench).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODEL="${FINETUNE_CACHE:-$ROOT/.cache}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
DATA="${FINETUNE_CACHE:-$ROOT/.cache}/data/chitchat"
cargo build --quiet --release --bin ft --example profile_step
FT=target/release/ft
runs="$(mktemp -d)"; trap 'rm -rf "$runs"' EXIT

echo "== ft device"; $FT device
PROMPT="Tell me about the history of Paris in a few sentences."
for mode in "--keep-quantized" ""; do
  echo "== ft generate (Q4_1 GGUF${mode:+, $mode}), 64 tokens, greedy"
  $FT generate "$MODEL" --chat --prompt "$PROMPT" --max-tokens 64 --stats $mode >/dev/null
done
echo "== ft train start: LoRA r8 on all 30 layers, batch 4, max length 256, 20 steps"
$FT train start "$MODEL" "$DATA" --iters 20 --batch-size 4 --max-length 256 --val-every 0 \
  --runs-dir "$runs" 2>&1 | grep -E "^(training|done)"
echo "== step profile (batch 4 x 256, every token trained)"
target/release/examples/profile_step "$MODEL" 4 256
