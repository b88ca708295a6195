#!/usr/bin/env bash
# `make check-gemma3`: the real Gemma 3 270M Q4_K_M GGUF through the ft
# command line as a user would run it: `ft models info` (from the header),
# greedy `ft generate` with its speed, and 20 LoRA steps on the sample chat
# data with the loss of each step. Prints the figures BENCHMARKS.md records.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
FT="${FT:-$ROOT/target/debug/ft}"
gemma="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
bash "$ROOT/scripts/fetch_gemma3.sh" >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== ft models info"
"$FT" models info "$gemma"

echo "== ft generate (greedy, 48 tokens)"
"$FT" generate "$gemma" --prompt "The old lighthouse keeper climbed the stairs every evening, and" \
  --max-tokens 48 --temperature 0 --stats

echo "== ft train start: LoRA r8, 20 steps, batch 4, sample chat data"
"$FT" train start "$gemma" "$CACHE/data/chitchat/train.jsonl" --iters 20 --batch-size 4 \
  --max-length 256 --learning-rate 2e-4 --lora-rank 8 --lora-alpha 16 \
  --runs-dir "$work/runs" --json >"$work/events.jsonl"
python3 - "$work/events.jsonl" <<'PY'
import json, sys
steps = [e for e in map(json.loads, open(sys.argv[1])) if e.get("event") == "step"]
losses = [e["loss"] for e in steps]
last = steps[-1]
print(f"{len(steps)} loss reports up to step {last['step']}; loss first {losses[0]:.4f}, last {losses[-1]:.4f}, "
      f"min {min(losses):.4f}")
print(f"trained tokens {last['trained_tokens']}, {last['tokens_per_second']:.1f} trained tok/s, "
      f"MLX peak {last['mlx_peak_bytes'] / 2**30:.2f} GiB, {last['elapsed_seconds']:.1f} s")
assert last["step"] == 20, f"the run stopped at step {last['step']}"
assert losses[-1] < losses[0], "the loss did not fall"
PY
