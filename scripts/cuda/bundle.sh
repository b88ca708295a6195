#!/usr/bin/env bash
# Builds FineTune's CUDA bundle here (no GPU needed) for a GPU machine that has
# no registries and no Rust toolchain, in pieces small enough to travel with a
# device run (64 MiB each, the working tree included):
#
#   .cache/cuda-bundle/a/   libmlx.tar.xz.part0
#   .cache/cuda-bundle/b/   libmlx.tar.xz.part1…, ft-cuda.xz,
#                           the mlx / mlx-lm Python wheels, SHA256SUMS
#
# libmlx.tar.xz holds the mlx-cuda-13 0.32.2 wheel's libmlx.so (its symbol
# table stripped: 25 MB of names), the headers its run-time kernel compiler
# needs and the libraries the wheel bundles. On
# the GPU machine scripts/cuda/install.sh puts the pieces together; the CUDA
# libraries themselves are the ones pip installed there (see scripts/cuda/ft).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
OUT="$CACHE/cuda-bundle"
cd "$ROOT"

MLX_BACKEND=cuda FINETUNE_CUDA_LIBS=0 bash scripts/setup.sh
MLX_BACKEND=cuda CARGO_TARGET_DIR=target/cuda cargo build --release -p finetune --bin ft

rm -rf "$OUT" && mkdir -p "$OUT"/{a,b/wheels} "$OUT/tmp/mlx/lib"
wheel_dir="$CACHE/mlx/0.32.2-cuda"
strip --strip-unneeded -o "$OUT/tmp/mlx/lib/libmlx.so" "$wheel_dir/mlx/lib/libmlx.so"
cp -r "$wheel_dir/mlx_cuda_13.libs" "$OUT/tmp/"
# MLX compiles kernels at run time (NVRTC) against its own headers and the
# CCCL / CUTLASS ones the wheel ships beside libmlx (mlx/include).
cp -r "$wheel_dir/mlx/include" "$OUT/tmp/mlx/"
tar -C "$OUT/tmp" -cf - mlx mlx_cuda_13.libs | xz -T0 -6 >"$OUT/libmlx.tar.xz"
split -b 35M -d -a 1 "$OUT/libmlx.tar.xz" "$OUT/libmlx.tar.xz.part"
mv "$OUT/libmlx.tar.xz.part0" "$OUT/a/"
mv "$OUT"/libmlx.tar.xz.part[1-9] "$OUT/b/"
strip -o "$OUT/tmp/ft-cuda" target/cuda/release/ft
xz -T0 -6 -c "$OUT/tmp/ft-cuda" >"$OUT/b/ft-cuda.xz"


# The Python side of mlx_lm on CUDA: MLX's bindings (which load the same
# libmlx.so) and mlx-lm, pinned by hash.
req="$OUT/tmp/requirements.txt"
cat >"$req" <<REQ
mlx==0.32.2 --hash=sha256:8d270ade1e48e006383a6b5f33a3a4ec5c265389299a60a60bf55165af1770d9
mlx-lm==0.32.2 --hash=sha256:5c0991248cfff5872503d74f466d2532dd8cb7fb3670cb9be7a06d7305dadc04
REQ
python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes -r "$req" \
  --python-version 3.12 --implementation cp --platform manylinux_2_35_x86_64 -d "$OUT/b/wheels"

(cd "$OUT" && sha256sum libmlx.tar.xz) >"$OUT/b/SHA256SUMS"
(cd "$OUT/tmp" && sha256sum ft-cuda) >>"$OUT/b/SHA256SUMS"
rm -rf "$OUT/tmp" "$OUT/libmlx.tar.xz"
du -sh "$OUT"/a "$OUT"/b
