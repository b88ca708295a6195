#!/usr/bin/env bash
# `make bench-kernels`: FineTune's CPU kernels against MLX's own ops (one
# process) and PyTorch's (the venv `make bench` uses), same shapes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
cd "$ROOT"
cargo build --quiet --release --bin ft
PT_VENV="$CACHE/venv-fixtures"
if ! "$PT_VENV/bin/python" -c "import torch" 2>/dev/null; then
  python3 -m venv "$PT_VENV"
  "$PT_VENV/bin/pip" install --quiet "torch==2.15.0" "transformers==5.24.0" "peft==0.21.2"
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%F)"
echo "== FineTune kernels vs MLX 0.32.2 (median of 5)"
target/release/ft bench --kernels --steps 5
echo "== PyTorch (median of 5)"
"$PT_VENV/bin/python" scripts/bench/kernels_torch.py 5
