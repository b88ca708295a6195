#!/usr/bin/env bash
# Data-parallel training on NVIDIA GPUs over MLX's NCCL backend (issue:
# outgrow one machine): FineTune as one process, then as ranks of a group
# (`ft train start -n N --backend nccl`, one process per GPU) with N = 1
# and, when the machine has more, N = every GPU, at the same batch per GPU
# (global batch 4 × N). A Llama-3.2-1B-shape model with random weights
# (make_bench_model.py) in bfloat16, LoRA r16 on every projection, rows of
# 1024 tokens. Prints each run's trained tokens/s after warm-up, its first
# losses, and the scaling efficiency (N-GPU tokens/s ÷ N × 1-GPU tokens/s).
# The 1-rank NCCL run must initialise the group and train as the single
# process does: its losses are printed beside the single process's.
#
# On the GPU machine, after scripts/cuda/install.sh:
#   bash scripts/cuda/distributed.sh
# Settings: BENCH_SHAPE (llama-3.2-1b | tiny), BENCH_LENGTH (1024),
# BENCH_ITERS (30), BENCH_OUT, FT, PT_PYTHON (for the model script).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SITE="${FT_CUDA_HOME:-/tmp/ft-cuda}/site"
FT="${FT:-$SITE/bin/ft}"
PT_PYTHON="${PT_PYTHON:-python3}"
SHAPE="${BENCH_SHAPE:-llama-3.2-1b}"
LENGTH="${BENCH_LENGTH:-1024}"
ITERS="${BENCH_ITERS:-30}"
EVERY=5
work="${BENCH_OUT:-$(mktemp -d)}"; mkdir -p "$work"
cd "$ROOT"
GPUS="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
[ "$GPUS" -ge 1 ] || GPUS=1
echo "== model and data ($SHAPE, rows of $LENGTH tokens); $GPUS GPU(s)"
[ -f "$work/bench/model/config.json" ] ||
  "$PT_PYTHON" scripts/cuda/make_bench_model.py "$work/bench" --shape "$SHAPE" --length "$LENGTH"
MODEL="$work/bench/model" DATA="$work/bench/data"
"$FT" device | tee "$work/device.txt" || true

ARGS=(--max-length "$LENGTH" --lora-rank 16 --lora-alpha 32 --mask all --learning-rate 1e-5
  --val-every 0 --report-every "$EVERY" --seed 3 --json)
run() { # name, ranks (0: one plain process), batch
  local name=$1 n=$2 batch=$3 extra=()
  [ "$n" -gt 0 ] && extra=(-n "$n" --backend nccl)
  echo "== $name: batch $batch, $ITERS steps"
  "$FT" train start "$MODEL" "$DATA" --iters "$ITERS" --batch-size "$batch" --runs-dir "$work/runs-$name" \
    "${extra[@]}" "${ARGS[@]}" >"$work/$name.log" 2>"$work/$name.err" || { echo "!! $name failed:"; tail -5 "$work/$name.err"; }
}
run single 0 4
run nccl1 1 4
[ "$GPUS" -gt 1 ] && run "nccl$GPUS" "$GPUS" $((4 * GPUS))

python3 - "$work" "$GPUS" <<'PY'
import json, os, sys
work, gpus = sys.argv[1], int(sys.argv[2])
def load(name):
    path = f"{work}/{name}.log"
    if not os.path.exists(path):
        return None
    events = [json.loads(l) for l in open(path) if l.startswith("{")]
    steps = [e for e in events if e["event"] == "step"]
    if len(steps) < 2:
        return None
    a, b = steps[0], steps[-1]
    t = lambda e: e["trained_tokens"] / e["tokens_per_second"]
    return {"tps": (b["trained_tokens"] - a["trained_tokens"]) / (t(b) - t(a)),
            "losses": [round(e["loss"], 4) for e in steps[:4]],
            "peak": max(e["mlx_peak_bytes"] for e in steps) / 2**30,
            "warnings": next((e.get("warnings") for e in events if e["event"] == "started"), [])}
print("| run | GPUs | trained tokens/s | MLX peak per rank (GiB) | first losses |")
print("|---|---|---|---|---|")
rows = {}
for name, n in [("single", 1), ("nccl1", 1), (f"nccl{gpus}", gpus)][: 3 if gpus > 1 else 2]:
    r = load(name)
    rows[name] = r
    if r is None:
        print(f"| {name} | {n} | failed (see {name}.err) | | |")
    else:
        print(f"| {name} | {n} | {r['tps']:.0f} | {r['peak']:.1f} | {r['losses']} |")
if rows.get("nccl1"):
    print("nccl1 warnings:", [w for w in rows["nccl1"]["warnings"] if "parallel" in w])
if gpus > 1 and rows.get(f"nccl{gpus}") and rows.get("nccl1"):
    eff = rows[f"nccl{gpus}"]["tps"] / (gpus * rows["nccl1"]["tps"])
    print(f"scaling efficiency at {gpus} GPUs: {100 * eff:.0f} %")
PY
