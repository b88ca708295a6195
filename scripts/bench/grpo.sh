#!/usr/bin/env bash
# `make bench-grpo`: GRPO on the default model (SmolLM2-135M-Instruct,
# float32) and generated arithmetic prompts with reference answers
# (scripts/bench/make_arithmetic_prompts.py: 220 to train on, 50 held out),
# rewarded by exact match of the completion's last number. First the base
# model's held-out reward (the same greedy evaluation after one step at
# learning rate 0: the adapters start at zero, so that is the base), then
# ITERS (40) GRPO steps evaluated every VAL_EVERY (20). Prints the held-out
# reward per evaluation, the training reward over the run, sampled and
# trained tokens/s, the share of time spent sampling, and peak memory.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ITERS="${BENCH_ITERS:-40}"
mkdir -p "$work/prompts"
python3 scripts/bench/make_arithmetic_prompts.py "$work/prompts" 220 50
# Every held-out prompt at each evaluation (50 = 25 batches of 2).
printf 'val_batches: 25\n' >"$work/eval.yaml"

# Exact match of the last number in the answer with the sum.
COMMON=(--method grpo --reward 'exact_match=(-?[0-9]+)' --group-size "${GROUP:-8}" --max-completion-length 24
  --temperature 0.8 --kl-coef 0.04 --batch-size 2 --max-length 128 --lora-rank 8 --lora-alpha 16
  --lora-layers 16 --warmup-steps 0 --report-every 1 --seed 7 --runs-dir "$work/runs" --json --config "$work/eval.yaml")
TIME=(/usr/bin/time -v)
echo "== the base model's held-out reward (1 step at learning rate 0)"
$FT train start "$MODEL" "$work/prompts" --iters 1 --learning-rate 0 "${COMMON[@]}" >"$work/base.log"
echo "== GRPO, $ITERS steps (2 prompts × ${GROUP:-8} answers per step), held-out every ${VAL_EVERY:-20}"
"${TIME[@]}" -o "$work/grpo.time" $FT train start "$MODEL" "$work/prompts" --iters "$ITERS" \
  --learning-rate "${LR:-2e-4}" --val-every "${VAL_EVERY:-20}" "${COMMON[@]}" >"$work/grpo.log"

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F); build $PROFILE"
python3 scripts/bench/grpo_summary.py "$work"
