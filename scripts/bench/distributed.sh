#!/usr/bin/env bash
# `make bench-distributed`: data-parallel training on this machine, 1 rank
# against 2 ranks over MLX's ring backend on loopback, for FineTune
# (`ft train start -n 2`) and for mlx_lm.lora 0.32.2 (`mlx.launch -n 2
# --backend ring`), one after the other in one run, at the same global
# batch: SmolLM2-135M-Instruct float32, the sample chat data, LoRA r8 on
# the last 16 layers, batch 4 (2 per rank), max length 256, every token
# trained. Prints trained tokens/s (warm-up excluded) and the scaling
# efficiency (2-rank tokens/s ÷ 2 × 1-rank tokens/s). On one machine the
# ranks share its cores, so the efficiency measures what splitting costs
# here, not what a second machine would add.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ITERS="${BENCH_ITERS:-20}"
EVERY=5
DATA="$CACHE/data/chitchat"
MLX_VENV="$CACHE/venv-interop"
if ! "$MLX_VENV/bin/python" -c "import mlx_lm" 2>/dev/null; then
  python3 -m venv "$MLX_VENV"
  "$MLX_VENV/bin/pip" install --quiet "mlx[cpu]==0.32.2" "mlx-lm==0.32.2"
fi

FT_ARGS=(--batch-size 4 --max-length 256 --lora-rank 8 --lora-alpha 16 --lora-layers 16 --mask all
  --learning-rate 1e-5 --val-every 0 --report-every "$EVERY" --seed 3 --runs-dir "$work/runs" --json)
for n in 1 2; do
  echo "== FineTune, $n rank(s) ($ITERS steps)"
  $FT train start "$MODEL" "$DATA" --iters "$ITERS" -n "$n" "${FT_ARGS[@]}" >"$work/ft$n.log"
done

cat >"$work/mlx_lm.yaml" <<YAML
lora_parameters:
  keys: [self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]
  rank: 8
  scale: 2.0
  dropout: 0.0
YAML
OPENBLAS="$(ls /usr/lib/*/libopenblas.so.0 2>/dev/null | head -n1 || true)"
MLX_LM=(-m mlx_lm lora -c "$work/mlx_lm.yaml" --model "$MODEL" --train --data "$DATA" --num-layers 16
  --batch-size 4 --max-seq-length 256 --iters "$ITERS" --learning-rate 1e-5 --steps-per-report "$EVERY"
  --steps-per-eval 100000 --val-batches 1)
echo "== mlx_lm.lora, 1 rank ($ITERS steps)"
LD_PRELOAD="$OPENBLAS" "$MLX_VENV/bin/python" "${MLX_LM[@]}" --adapter-path "$work/mlx1" >"$work/mlx_lm1.log" 2>&1
echo "== mlx_lm.lora, 2 ranks (mlx.launch --backend ring, $ITERS steps)"
"$MLX_VENV/bin/mlx.launch" -n 2 --backend ring --env "LD_PRELOAD=$OPENBLAS" -- \
  "$MLX_VENV/bin/python" "${MLX_LM[@]}" --adapter-path "$work/mlx2" >"$work/mlx_lm2.log" 2>&1

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F); build $PROFILE"
python3 - "$work" <<'PY'
import sys
sys.path.insert(0, "scripts/bench")
import logs
work = sys.argv[1]
rows = []
for tool, parse, name in (("FineTune", logs.finetune, "ft"), ("mlx_lm.lora", logs.mlx_lm, "mlx_lm")):
    one, two = parse(f"{work}/{name}1.log")[0], parse(f"{work}/{name}2.log")[0]
    rows.append((tool, one, two))
print("| tool | 1 rank tokens/s | 2 ranks tokens/s | scaling efficiency |")
print("|---|---|---|---|")
for tool, one, two in rows:
    print(f"| {tool} | {one:.0f} | {two:.0f} | {100 * two / (2 * one):.0f} % |")
PY
