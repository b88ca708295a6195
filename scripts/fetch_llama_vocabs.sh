#!/usr/bin/env bash
# llama.cpp's tokenizer test vectors (vocab-only GGUFs `ggml-vocab-*.gguf`
# with `.gguf.inp` / `.gguf.out`), for tests/gguf_tokenizers.rs. They ship in
# the llama-cpp-python sdist on PyPI (vendor/llama.cpp/models/); this fetches
# the pinned sdist, checks its sha256, and extracts only those files into
# .cache/llama-vocabs/. Idempotent: does nothing when they are already there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
DEST="$CACHE/llama-vocabs"
VERSION="0.3.36"
SDIST="llama_cpp_python-$VERSION.tar.gz"
# From https://pypi.org/pypi/llama-cpp-python/json (release 0.3.36, the sdist).
SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/$SDIST"
STAMP="$DEST/.from-$SDIST"
# sha256sum or `shasum -a 256` (macOS); a missing tool is not a mismatch.
# shellcheck source-path=SCRIPTDIR source=lib/sha256.sh
. "$ROOT/scripts/lib/sha256.sh"

if [[ -f "$STAMP" ]]; then
  echo "llama.cpp tokenizer vectors already in $DEST"
  exit 0
fi

mkdir -p "$CACHE"
ARCHIVE="$CACHE/$SDIST"
if ! sha256_matches "$ARCHIVE" "$SHA256"; then
  echo "Downloading $SDIST (73 MiB) from PyPI"
  curl -fL --retry 3 -o "$ARCHIVE.part" "$URL"
  if ! sha256_matches "$ARCHIVE.part" "$SHA256"; then
    echo "error: $SDIST does not have the pinned sha256 $SHA256" >&2
    rm -f "$ARCHIVE.part"
    exit 1
  fi
  mv "$ARCHIVE.part" "$ARCHIVE"
fi

TMP="$(mktemp -d "$CACHE/llama-vocabs.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
# GNU tar needs --wildcards to match members by pattern; macOS's bsdtar
# always does and rejects the option.
wildcards=""
tar --version 2>/dev/null | grep -q 'GNU tar' && wildcards=--wildcards
tar -xzf "$ARCHIVE" -C "$TMP" $wildcards \
  "llama_cpp_python-$VERSION/vendor/llama.cpp/models/ggml-vocab-*"
rm -rf "$DEST"
mv "$TMP/llama_cpp_python-$VERSION/vendor/llama.cpp/models" "$DEST"
touch "$STAMP"
echo "llama.cpp tokenizer vectors: $(ls "$DEST"/ggml-vocab-*.gguf | wc -l) vocabularies in $DEST"
