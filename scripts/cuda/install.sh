#!/usr/bin/env bash
# On the GPU machine: puts FineTune's CUDA bundle together from the pieces
# that device runs carried (.cache/cuda-bundle/a and /b, see bundle.sh) into
# $FT_CUDA_HOME (default /tmp/ft-cuda), which outlives one run while the
# machine stays up. Safe to run again: pieces already moved are kept, it
# assembles once all are there, and a bundle with other checksums replaces
# the installed one. Prints what the machine has.
#
#   $FT_CUDA_HOME/site/bin/ft          the launcher (finds the CUDA libraries)
#   $FT_CUDA_HOME/site/mlx/lib/        libmlx.so (shared with Python's mlx)
#   $FT_CUDA_HOME/site/{mlx,mlx_lm}/   for `PYTHONPATH=$FT_CUDA_HOME/site python3 -m mlx_lm`
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HOME_DIR="${FT_CUDA_HOME:-/tmp/ft-cuda}"
SITE="$HOME_DIR/site"
mkdir -p "$HOME_DIR/pieces"
for part in a b; do
  src="$ROOT/.cache/cuda-bundle/$part"
  [ -d "$src" ] && cp -r "$src/." "$HOME_DIR/pieces/"
done
cd "$HOME_DIR/pieces"
echo "pieces here: $(ls | tr '\n' ' ')"

if [ -f SHA256SUMS ] && cmp -s SHA256SUMS "$SITE/SHA256SUMS"; then
  echo "bundle: already installed in $SITE"
elif [ -f SHA256SUMS ] && [ -f libmlx.tar.xz.part0 ] && [ -f ft-cuda.xz ]; then
  cat libmlx.tar.xz.part* >libmlx.tar.xz
  xz -dc ft-cuda.xz >ft-cuda
  sha256sum -c SHA256SUMS  # also tells a missing piece
  rm -rf "$SITE" && mkdir -p "$SITE/bin"
  # The wheels first: pip --target will not write into an existing mlx/.
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" wheels/*.whl
  tar -xJf libmlx.tar.xz -C "$SITE"
  install -m 755 ft-cuda "$SITE/bin/ft-cuda"
  install -m 755 "$ROOT/scripts/cuda/ft" "$SITE/bin/ft"
  # libmlx.so's own rpath looks for $SITE/nvidia/<component>/lib (the pip
  # layout): point it at the CUDA libraries torch's pip packages installed.
  nvidia="$(python3 -c 'import importlib.util as u; s = u.find_spec("nvidia"); print(list(s.submodule_search_locations)[0] if s else "")' 2>/dev/null || true)"
  [ -n "$nvidia" ] && ln -sfn "$nvidia" "$SITE/nvidia"
  cp SHA256SUMS "$SITE/"  # which bundle is installed: a newer one replaces it
  rm -f libmlx.tar.xz ft-cuda
  echo "bundle: installed in $SITE (CUDA libraries: ${nvidia:-none found})"
else
  echo "bundle: incomplete, waiting for the other pieces"
fi

echo "--- machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 - <<'PY' || true
import importlib, importlib.util as u
for name in ["torch", "transformers", "peft", "tokenizers", "numpy", "yaml", "jinja2", "google.protobuf", "sentencepiece", "safetensors"]:
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as e:
        print(f"{name} MISSING ({e.__class__.__name__})")
s = u.find_spec("nvidia")
print("nvidia:", list(s.submodule_search_locations) if s else None)
PY
nv="$(readlink -f "$SITE/nvidia" 2>/dev/null || true)"
[ -n "$nv" ] && find "$nv" -maxdepth 3 -name 'lib*.so*' | sed "s|$nv/||" | sort | head -40
ls -d /usr/local/cuda* 2>/dev/null || true
