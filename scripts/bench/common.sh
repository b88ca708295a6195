# Sourced by the benchmark scripts (preference.sh, grpo.sh, distributed.sh):
# sets ROOT and CACHE, a work folder (BENCH_WORK, kept; else a temporary one,
# removed at exit), builds ft and sets FT (BENCH_PROFILE=release, the
# default, or debug: MLX and OpenBLAS are optimised either way, the Rust
# side is not — say so when recording figures), and MODEL, the default model
# as a float32 Hugging Face folder (converted once into the cache).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
work="${BENCH_WORK:-$(mktemp -d)}"; mkdir -p "$work"
[ -n "${BENCH_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
cd "$ROOT"
PROFILE="${BENCH_PROFILE:-release}"
if [ "$PROFILE" = release ]; then
  cargo build --quiet --release --bin ft
else
  cargo build --quiet -p finetune --bin ft
fi
FT="target/$PROFILE/ft"
MODEL="$CACHE/models/smollm2-135m-instruct-f32"
[ -d "$MODEL" ] || $FT convert "$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf" --output "$MODEL"
