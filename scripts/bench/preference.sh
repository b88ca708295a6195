#!/usr/bin/env bash
# `make bench-preference`: 50 DPO steps on the default model (SmolLM2-135M-
# Instruct, float32) and the chitchat preference pairs that setup derives
# (scripts/make_preference_dataset.py), evaluated every VAL_EVERY (25) steps
# on 100 held-out pairs (prompts never trained on); then SFT on the same rows (both
# answers of every pair as plain chat examples, batch 8 rows = DPO's 4 pairs)
# for the same steps, side by side in this script. Prints the held-out
# preference loss / accuracy / margin per evaluation, and trained tokens/s
# and peak memory of both methods.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ITERS="${BENCH_ITERS:-50}"
PAIRS="$CACHE/data/chitchat-pairs"
[ -f "$PAIRS/.complete" ] || { echo "bench-preference: run make setup first ($PAIRS is missing)" >&2; exit 1; }

# The SFT rows: each pair's prompt with its chosen answer and with its
# rejected one, in the pairs' order (so SFT's batch of 8 holds the same
# conversations as DPO's batch of 4 pairs).
mkdir -p "$work/sft"
for split in train valid; do
  python3 - "$PAIRS/$split.jsonl" >"$work/sft/$split.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    pair = json.loads(line)
    for side in ("chosen", "rejected"):
        print(json.dumps({"messages": pair["prompt"] + pair[side]}, ensure_ascii=False))
PY
done
# The first 100 held-out pairs (25 batches of 4) at each evaluation.
printf 'val_batches: 25\n' >"$work/eval-all.yaml"
printf 'val_batches: 1\n' >"$work/eval-one.yaml"

COMMON=(--iters "$ITERS" --max-length 256 --lora-rank 8 --lora-alpha 16 --lora-layers 16
  --learning-rate 5e-5 --warmup-steps 0 --report-every 1 --seed 7 --runs-dir "$work/runs" --json)
TIME=(/usr/bin/time -v)
echo "== DPO, beta 0.1 ($ITERS steps, 4 pairs per step, held-out every ${VAL_EVERY:-25})"
"${TIME[@]}" -o "$work/dpo.time" $FT train start "$MODEL" "$PAIRS" --config "$work/eval-all.yaml" --method dpo --beta 0.1 \
  --batch-size 4 --val-every "${VAL_EVERY:-25}" "${COMMON[@]}" >"$work/dpo.log"
echo "== SFT on the same rows ($ITERS steps, 8 rows per step)"
"${TIME[@]}" -o "$work/sft.time" $FT train start "$MODEL" "$work/sft" --config "$work/eval-one.yaml" \
  --batch-size 8 --val-every "$ITERS" "${COMMON[@]}" >"$work/sft.log"

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
python3 scripts/bench/preference_summary.py "$work"
