#!/usr/bin/env bash
# Interoperability check (`make check-interop`): trains LoRA and DoRA adapters with `ft` on a
# tiny random Llama, then loads them in mlx-lm 0.32.2 (in a virtualenv made
# here, with PyPI's MLX 0.32.2) and compares its logits with the engine's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
VENV="$CACHE/venv-interop"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "mlx[cpu]==0.32.2" "mlx-lm==0.32.2"
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
  adapters="$(ls -d "$work"/runs-$kind/*/adapters)"
  target/debug/examples/logits "$model" "$adapters" <"$work/ids.json" >"$work/engine-$kind.json"
  "$VENV/bin/python" "$ROOT/scripts/interop/check_mlx_lm.py" "$model" "$adapters" \
    "$work/engine-$kind.json" "$work/ids.json"
done
