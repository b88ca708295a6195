#!/usr/bin/env bash
# Build llama.cpp's tools, CPU only, from the llama.cpp sources vendored in the
# llama-cpp-python sdist on PyPI (the same pinned sdist scripts/fetch_llama_vocabs.sh
# uses), into $CACHE/llama.cpp/bin:
#   llama-quantize     requantize GGUFs (scripts/make_quantized_ggufs.sh)
#   llama-perplexity   perplexity of a GGUF on a text
#   llama-completion   greedy text from a prompt, non-interactively (-no-cnv;
#                      in this llama.cpp version llama-cli is the chat front end
#                      and is built with the server, which is left out here)
#   llama-simple       the minimal greedy generator (examples/simple)
#   llama-export-lora  merge a GGUF LoRA adapter into a model
# Also extracts the full source tree into $CACHE/llama.cpp/src, whose
# convert_hf_to_gguf.py and gguf-py are used by scripts/fixtures/make_gguf_architectures.py.
#
# cmake and ninja come from PyPI into the venv $CACHE/venv-cmake (the machine
# needs only python3, gcc and g++). Release, static, GGML_NATIVE=OFF (portable
# binaries), no CUDA/Metal/OpenSSL/curl, no tests or server.
# Idempotent: a stamp records the sdist and the flags; a second run does nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
VERSION="0.3.36"
SDIST="llama_cpp_python-$VERSION.tar.gz"
# From https://pypi.org/pypi/llama-cpp-python/json (release 0.3.36, the sdist).
SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/$SDIST"
CMAKE_VERSION="3.31.6"
NINJA_VERSION="1.11.1.4"

DEST="$CACHE/llama.cpp"
SRC="$DEST/src"
BUILD="$DEST/build"
BIN="$DEST/bin"
VENV="$CACHE/venv-cmake"
TOOLS=(llama-quantize llama-perplexity llama-completion llama-simple llama-export-lora)
CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DGGML_NATIVE=OFF
  -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_OPENMP=OFF
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON
)
STAMP="$DEST/.built"
WANT="$SDIST cmake=$CMAKE_VERSION ${CMAKE_FLAGS[*]} tools=${TOOLS[*]}"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  ok=1
  for t in "${TOOLS[@]}"; do [[ -x "$BIN/$t" ]] || ok=0; done
  if [[ $ok == 1 && -f "$SRC/convert_hf_to_gguf.py" ]]; then
    echo "llama.cpp tools already built in $BIN"
    exit 0
  fi
fi

mkdir -p "$CACHE"
ARCHIVE="$CACHE/$SDIST"
if [[ ! -f "$ARCHIVE" ]] || ! echo "$SHA256  $ARCHIVE" | sha256sum -c --status; then
  echo "Downloading $SDIST (73 MiB) from PyPI"
  curl -fL --retry 3 -o "$ARCHIVE.part" "$URL"
  if ! echo "$SHA256  $ARCHIVE.part" | sha256sum -c --status; then
    echo "error: $SDIST does not have the pinned sha256 $SHA256" >&2
    rm -f "$ARCHIVE.part"
    exit 1
  fi
  mv "$ARCHIVE.part" "$ARCHIVE"
fi

# Sources: extracted afresh when the stamp is missing or different.
if [[ ! -f "$SRC/.from-$SDIST" ]]; then
  echo "Extracting llama.cpp from $SDIST into $SRC"
  TMP="$(mktemp -d "$CACHE/llama.cpp-src.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  tar -xzf "$ARCHIVE" -C "$TMP" "llama_cpp_python-$VERSION/vendor/llama.cpp"
  mkdir -p "$DEST"
  rm -rf "$SRC" "$BUILD"
  mv "$TMP/llama_cpp_python-$VERSION/vendor/llama.cpp" "$SRC"
  # The vendored tree has a `.git` file pointing into the sdist's own git dir,
  # which is not extracted; remove it so cmake's git lookups do not trip on it.
  rm -f "$SRC/.git"
  touch "$SRC/.from-$SDIST"
fi

# cmake + ninja from PyPI.
if [[ ! -x "$VENV/bin/cmake" || ! -x "$VENV/bin/ninja" ]]; then
  echo "Installing cmake $CMAKE_VERSION and ninja $NINJA_VERSION from PyPI into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "cmake==$CMAKE_VERSION" "ninja==$NINJA_VERSION"
fi
CMAKE="$VENV/bin/cmake"
export PATH="$VENV/bin:$PATH"

JOBS="${JOBS:-$(nproc)}"
start=$(date +%s)
"$CMAKE" -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_MAKE_PROGRAM="$VENV/bin/ninja" "${CMAKE_FLAGS[@]}"
"$CMAKE" --build "$BUILD" --parallel "$JOBS" --target "${TOOLS[@]}"
mkdir -p "$BIN"
for t in "${TOOLS[@]}"; do
  install -m 755 "$BUILD/bin/$t" "$BIN/$t"
done
echo "$WANT" > "$STAMP"
echo "llama.cpp tools built in $BIN in $(( $(date +%s) - start )) s: ${TOOLS[*]}"
