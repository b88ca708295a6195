#!/usr/bin/env bash
# The GPU benchmark (issue: train on NVIDIA GPUs): FineTune (MLX CUDA) vs
# mlx_lm.lora 0.32.2 (mlx-cuda-13) vs PyTorch + transformers + PEFT, one after
# the other in one run on one GPU: a Llama model of the Llama-3.2-1B shape
# with random weights (made here by make_bench_model.py) in bfloat16, the
# same word-level token data, LoRA rank 16 (alpha 32 = mlx-lm scale 2) on
# q/k/v/o/gate/up/down of every layer, batch 4 x 1024 tokens, every token
# trained, AdamW at 1e-5, the same number of steps.
#
# Prints trained tokens/s (the first report, with compilation and warm-up,
# left out), peak GPU memory (the driver's reading, sampled every 100 ms, and
# each framework's own), and achieved FLOP/s against the card's bf16 matmul
# peak measured in the same run, with the card named.
#
# On the GPU machine, after scripts/cuda/install.sh:
#   bash scripts/cuda/bench.sh
# Settings (environment): BENCH_SHAPE (llama-3.2-1b | tiny), BENCH_LENGTH
# (1024), BENCH_ITERS (60), BENCH_EVERY (10), BENCH_OUT (where the logs go),
# FT (the launcher), MLX_PYTHON / PT_PYTHON (the Pythons for mlx_lm and for
# PyTorch), PT_DEVICE (cuda). A CPU dry run of the script itself:
#   FT=target/release/ft MLX_PYTHON=.cache/venv-interop/bin/python \
#   PT_PYTHON=.cache/venv-fixtures/bin/python PT_DEVICE=cpu BENCH_SHAPE=tiny \
#   BENCH_LENGTH=128 bash scripts/cuda/bench.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SITE="${FT_CUDA_HOME:-/tmp/ft-cuda}/site"
FT="${FT:-$SITE/bin/ft}"
MLX_PYTHON="${MLX_PYTHON:-python3}"
PT_PYTHON="${PT_PYTHON:-python3}"
PT_DEVICE="${PT_DEVICE:-cuda}"
SHAPE="${BENCH_SHAPE:-llama-3.2-1b}"
LENGTH="${BENCH_LENGTH:-1024}"
ITERS="${BENCH_ITERS:-60}"
EVERY="${BENCH_EVERY:-10}"
RANK=16
work="${BENCH_OUT:-$(mktemp -d)}"; mkdir -p "$work"
cd "$ROOT"
# Python's mlx and mlx_lm live in the bundle's site folder on the GPU machine.
# The launcher says where the CUDA libraries and headers are (it stops here
# with a clear message when they are missing).
if [ -d "$SITE/mlx_lm" ]; then
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  env_lines="$("$SITE/bin/ft" --cuda-env)"
  eval "$env_lines"
fi

echo "== model and data ($SHAPE, rows of $LENGTH tokens)"
[ -f "$work/bench/model/config.json" ] ||
  "$PT_PYTHON" scripts/cuda/make_bench_model.py "$work/bench" --shape "$SHAPE" --length "$LENGTH"
MODEL="$work/bench/model" DATA="$work/bench/data"
LAYERS="$("$PT_PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$MODEL/config.json")"

echo "== the card and its matmul peak"
"$FT" device --json >"$work/device.json" || echo "!! ft device failed"
"$FT" device | tee "$work/device.txt" || true
"$PT_PYTHON" - "$PT_DEVICE" >"$work/torch_matmul.json" <<'PY'
import json, sys, time, torch
device = sys.argv[1]
n = 8192 if device.startswith("cuda") else 1024
a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
for _ in range(3): a @ b
if device.startswith("cuda"): torch.cuda.synchronize()
runs, start = 10, time.perf_counter()
for _ in range(runs): a @ b
if device.startswith("cuda"): torch.cuda.synchronize()
seconds = time.perf_counter() - start
name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
print(json.dumps({"card": name, "size": n, "tflops": 2 * n**3 * runs / seconds / 1e12}))
PY
cat "$work/torch_matmul.json"

# watch NAME: samples the GPU's used memory every 100 ms into NAME.gpumem.
watcher=""
watch_start() {
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$work/$1.gpumem" &
    watcher=$!
  fi
}
watch_stop() { [ -z "$watcher" ] || { kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null || true; watcher=""; }; }
trap watch_stop EXIT
idle() { command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n1 || echo 0; }
idle >"$work/idle.gpumem"
# A tool that fails is reported and left out of the table; the others run.
failed() { echo "!! $1 failed; the end of its log:"; tail -n 25 "$2"; rm -f "$work/$1.log"; }

# FineTune as it runs by default (a compiled step on a GPU), then without
# compiling, then with gradient checkpointing.
for variant in ft ft_uncompiled ft_checkpointed; do
  case "$variant" in
    ft) extra=() ;;
    ft_uncompiled) extra=(--no-compile) ;;
    ft_checkpointed) extra=(--grad-checkpoint) ;;
  esac
  echo "== FineTune ${extra[*]} ($ITERS steps)"
  watch_start "$variant"
  "$FT" train start "$MODEL" "$DATA" --iters "$ITERS" --batch-size 4 --max-length "$LENGTH" \
    --lora-rank "$RANK" --lora-alpha $((2 * RANK)) --lora-layers "$LAYERS" --mask all --learning-rate 1e-5 \
    --val-every 0 --report-every "$EVERY" --runs-dir "$work/runs" --json "${extra[@]}" \
    >"$work/$variant.log" 2>"$work/$variant.err" || failed "$variant" "$work/$variant.err"
  watch_stop
done

echo "== mlx_lm.lora ($ITERS steps)"
cat >"$work/mlx_lm.yaml" <<YAML
lora_parameters:
  keys: [self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]
  rank: $RANK
  scale: 2.0
  dropout: 0.0
YAML
watch_start mlx_lm
"$MLX_PYTHON" -m mlx_lm lora -c "$work/mlx_lm.yaml" --model "$MODEL" --train --data "$DATA" \
  --num-layers "$LAYERS" --batch-size 4 --max-seq-length "$LENGTH" --iters "$ITERS" --learning-rate 1e-5 \
  --steps-per-report "$EVERY" --steps-per-eval 100000 --val-batches 1 \
  --adapter-path "$work/mlx_lm_adapters" >"$work/mlx_lm.log" 2>&1 || failed mlx_lm "$work/mlx_lm.log"
watch_stop

echo "== PyTorch + PEFT ($ITERS steps)"
dtype=bfloat16; [ "$PT_DEVICE" = cpu ] && dtype=float32
watch_start peft
"$PT_PYTHON" scripts/bench/peft_lora.py "$MODEL" "$DATA/train.jsonl" "$ITERS" "$EVERY" --device "$PT_DEVICE" \
  --dtype "$dtype" --rank "$RANK" --layers "$LAYERS" --max-length "$LENGTH" >"$work/peft.log" 2>"$work/peft.err" ||
  failed peft "$work/peft.err"
watch_stop

echo
echo "$(date -u +%F), $ITERS steps, batch 4 x $LENGTH, LoRA rank $RANK on 7 projections x $LAYERS layers"
"$PT_PYTHON" scripts/cuda/summarize.py "$work" "$MODEL/config.json" | tee "$work/summary.md"
