#!/usr/bin/env bash
# `make bench`: FineTune, mlx_lm.lora 0.32.2 and PyTorch + PEFT side by side
# on this machine, one after the other in one run: SmolLM2-135M-Instruct in
# float32 (the default model as a Hugging Face folder), the sample chat data,
# LoRA rank 8 on all 7 projections of the last 16 layers, batch 4, max
# length 512, every token trained, the same number of steps. mlx_lm runs
# with Debian's OpenBLAS preloaded (the wheel's bundled reference BLAS is
# ~30x slower), as FineTune links it.
# FineTune runs twice: as the others do (padded batches), and with packing.
# Prints trained tokens/s (warm-up excluded), peak memory per tool, and
# FineTune's achieved FLOP/s against the matmul peak `ft device` measures.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
ITERS="${BENCH_ITERS:-25}"
EVERY=5
work="${BENCH_WORK:-$(mktemp -d)}"; mkdir -p "$work"
[ -n "${BENCH_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
cd "$ROOT"
cargo build --quiet --release --bin ft
FT=target/release/ft
MODEL="$CACHE/models/smollm2-135m-instruct-f32"
[ -d "$MODEL" ] || $FT convert "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" --output "$MODEL"
DATA="$CACHE/data/chitchat"
MLX_VENV="$CACHE/venv-interop"
if ! "$MLX_VENV/bin/python" -c "import mlx_lm" 2>/dev/null; then
  python3 -m venv "$MLX_VENV"
  "$MLX_VENV/bin/pip" install --quiet "mlx[cpu]==0.32.2" "mlx-lm==0.32.2"
fi
PT_VENV="$CACHE/venv-fixtures"
if ! "$PT_VENV/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  python3 -m venv "$PT_VENV"
  "$PT_VENV/bin/pip" install --quiet "torch==2.15.0" "transformers==5.24.0" "peft==0.21.2"
fi
TIME=(/usr/bin/time -v)

$FT device --json >"$work/device.json"
FT_ARGS=(--batch-size 4 --max-length 512 --lora-rank 8 --lora-alpha 16 --lora-layers 16 --mask all
  --learning-rate 1e-5 --val-every 0 --report-every "$EVERY" --runs-dir "$work/runs" --json)
echo "== FineTune ($ITERS steps)"
"${TIME[@]}" -o "$work/ft.time" $FT train start "$MODEL" "$DATA" --iters "$ITERS" "${FT_ARGS[@]}" >"$work/ft.log"
# The same with sequence packing (rows filled with whole examples, attention
# kept inside each): no padding computed.
echo "== FineTune --packing ($ITERS steps)"
"${TIME[@]}" -o "$work/ft_packed.time" $FT train start "$MODEL" "$DATA" --iters "$ITERS" --packing "${FT_ARGS[@]}" >"$work/ft_packed.log"

echo "== mlx_lm.lora ($ITERS steps)"
cat >"$work/mlx_lm.yaml" <<YAML
lora_parameters:
  keys: [self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]
  rank: 8
  scale: 2.0
  dropout: 0.0
YAML
OPENBLAS="$(ls /usr/lib/*/libopenblas.so.0 2>/dev/null | head -n1 || true)"
LD_PRELOAD="$OPENBLAS" "${TIME[@]}" -o "$work/mlx_lm.time" "$MLX_VENV/bin/python" -m mlx_lm lora -c "$work/mlx_lm.yaml" \
  --model "$MODEL" --train --data "$DATA" --num-layers 16 --batch-size 4 \
  --max-seq-length 512 --iters "$ITERS" --learning-rate 1e-5 --steps-per-report "$EVERY" \
  --steps-per-eval 100000 --val-batches 1 --adapter-path "$work/mlx_lm_adapters" >"$work/mlx_lm.log" 2>&1

echo "== PyTorch + PEFT ($ITERS steps)"
"${TIME[@]}" -o "$work/peft.time" "$PT_VENV/bin/python" scripts/bench/peft_lora.py "$MODEL" \
  "$DATA/train.jsonl" "$ITERS" "$EVERY" >"$work/peft.log" 2>"$work/peft.err"

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
"$PT_VENV/bin/python" scripts/bench/summarize.py "$work" "$MODEL/config.json"
