#!/usr/bin/env bash
# scripts/dist/test_installed.sh — `make test-dist`: the packages as a user
# gets them, away from this clone.
#
# 1. The .deb is installed with apt into a clean Debian root of this
#    machine's release (mmdebstrap from Debian's archive: no cache folder,
#    no Rust, no Node, no repository). Inside it: `ft --version`, `ft device`,
#    and `ft train start` on the default model and the sample data the
#    package ships, the model being a tiny random one placed in the Hugging
#    Face cache as if downloaded; then the installed app is started under
#    Xvfb (with tauri-driver, copied in) and driven by the end-to-end test
#    from outside, in its "installed" mode.
# 2. The AppImage runs on this host with the clone's cache folder hidden
#    (FINETUNE_CACHE pointed at an empty folder, HOME empty): `ft device`,
#    `ft train start`, and the same end-to-end test.
#
# Needs root (chroot, mounts) and make dist's packages in target/dist/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
OUT="$ROOT/target/dist"
die() { echo "test-dist: $*" >&2; exit 1; }
say() { echo "test-dist: $*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

[[ "$(id -u)" == 0 ]] || die "needs root (chroot and mounts); run it with sudo"
deb=$(ls "$OUT"/*.deb 2>/dev/null | head -1)
appimage=$(ls "$OUT"/*.AppImage 2>/dev/null | head -1)
[[ -n "$deb" && -n "$appimage" ]] || die "no packages in $OUT: run make dist first"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing (apt-get install mmdebstrap)"
DRIVER="$(command -v tauri-driver || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver")"
[[ -x "$DRIVER" ]] || die "tauri-driver is missing (make setup installs it)"

work=$(mktemp -d /tmp/finetune-dist.XXXXXX)
mounted=()
cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
    [[ -n "${group:-}" ]] && kill -- "-$group" 2>/dev/null || true
    [[ -n "${xvfb:-}" ]] && kill "$xvfb" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A tiny random model, as the hub cache keeps a download: refs/main names a
# commit whose snapshot folder holds the files.
cargo build --quiet --workspace --features finetune-app/custom-protocol --example tiny_model
"$ROOT/target/debug/examples/tiny_model" "$work/tiny" >/dev/null
place_model() { # HF_HOME → the default model's snapshot in its hub cache
    local repo="$1/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct"
    local commit=0123456789abcdef0123456789abcdef01234567
    mkdir -p "$repo/refs" "$repo/snapshots/$commit"
    printf '%s' "$commit" >"$repo/refs/main"
    cp "$work/tiny/tiny-llama"/* "$repo/snapshots/$commit/"
}

# ---------------------------------------------------------------- the .deb
release=$(. /etc/os-release && echo "$VERSION_CODENAME")
base="$CACHE/dist-root/$release.tar"
# The package's own dependencies (WebKitGTK …) are preinstalled into the
# cached base, so a rerun downloads nothing; the install below still
# resolves them from the package's metadata.
depends=$(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/ //g')
include="xvfb,xauth,webkit2gtk-driver,ca-certificates,$depends"
if [[ ! -f "$base" || "$(cat "$base.include" 2>/dev/null)" != "$include" ]]; then
    say "making a clean $release root (mmdebstrap; once, cached in $base)"
    mkdir -p "$(dirname "$base")"
    rm -rf "$base.tmp"
    mmdebstrap --variant=apt --format=tar --include="$include" "$release" "$base.tmp" >"$work/mmdebstrap.log" 2>&1 \
        || { tail -20 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
    mv "$base.tmp" "$base"
    echo "$include" >"$base.include"
fi
root="$work/root"
mkdir -p "$root"
tar -C "$root" -xf "$base"
for m in proc sys dev dev/pts; do
    mount --bind "/$m" "$root/$m"
    mounted+=("$root/$m")
done
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/finetune.deb"
say "installing $(basename "$deb") with apt"
t0=$(date +%s.%N)
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/finetune.deb >"$work/apt.log" 2>&1 \
    || { tail -20 "$work/apt.log" >&2; die "apt-get install failed"; }
install_s=$(since "$t0")
for absent in cargo rustc node npm; do
    chroot "$root" sh -c "! command -v $absent >/dev/null" || die "$absent is in the clean root"
done
[[ ! -e "$root$ROOT" ]] || die "the clone is visible in the clean root"
place_model "$root/root/.cache/huggingface"
inside() { chroot "$root" env -i HOME=/root PATH=/usr/bin:/bin HF_HUB_OFFLINE=1 "$@"; }
say "installed: $(inside ft --version)"
inside ft device >"$work/device.txt" || { cat "$work/device.txt" >&2; die "ft device failed in the clean root"; }
grep -E "^MLX" "$work/device.txt"
t0=$(date +%s.%N)
inside ft train start --iters 3 --batch-size 2 --max-length 64 --runs-dir /tmp/cli-runs --json >"$work/train.json" 2>"$work/train.err" \
    || { tail -20 "$work/train.err" >&2; die "ft train start failed in the clean root"; }
grep -q '"event":"finished"' "$work/train.json" || { tail -5 "$work/train.json" >&2; die "no finished event"; }
first_train_s=$(since "$t0")
say "ft train start: 3 steps (--iters 3, finished) on the shipped sample data in ${first_train_s} s (first run)"

# One X display on the host for both runs: the app draws there, and the
# test's drag source (scripts/e2e_drag.py) drops files onto it.
display=$((100 + RANDOM % 800))
Xvfb ":$display" -screen 0 1600x1000x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
xvfb=$!
for _ in $(seq 100); do [[ -e "/tmp/.X11-unix/X$display" ]] && break; sleep 0.1; done
export DISPLAY=":$display"

run_e2e() { # label, app path, host path of its runs folder, chroot root or ""
    local label=$1 app=$2 runs=$3 in_root=$4 port=$((20000 + RANDOM % 20000))
    local driver_cmd=(env APPIMAGE_EXTRACT_AND_RUN=1 HOME="$home" HF_HUB_OFFLINE=1 FINETUNE_CACHE="$work/no-cache"
        "$DRIVER" --port "$port" --native-port $((port + 1)))
    if [[ -n "$in_root" ]]; then
        cp "$DRIVER" "$in_root/usr/local/bin/tauri-driver"
        driver_cmd=(chroot "$in_root" env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin HF_HUB_OFFLINE=1
            DISPLAY="$DISPLAY" /usr/local/bin/tauri-driver --port "$port" --native-port $((port + 1)))
    fi
    setsid "${driver_cmd[@]}" >"$work/driver-$label.log" 2>&1 &
    group=$!
    for _ in $(seq 100); do
        curl -s "http://127.0.0.1:$port/status" >/dev/null 2>&1 && break
        sleep 0.1
    done
    say "end to end on the $label app"
    # $work is seen at the same path inside the root: the tiny model the
    # test drops and the dataset file it writes there.
    FINETUNE_APP="$app" FINETUNE_RUNS="$runs" FINETUNE_INSTALLED=1 E2E_OUT="$work/e2e-$label" \
        FINETUNE_TINY_MODEL="$work/tiny/tiny-llama" E2E_DRAG="$ROOT/scripts/e2e_drag.py" \
        TAURI_DRIVER_URL="http://127.0.0.1:$port" node --test --test-concurrency=1 "$ROOT"/tests/e2e/*.e2e.mjs \
        || { tail -30 "$work/driver-$label.log" >&2; die "the end-to-end test failed on the $label app"; }
    mkdir -p "$ROOT/target/e2e-$label" && cp "$work/e2e-$label"/*.png "$work/e2e-$label"/perf.json "$ROOT/target/e2e-$label/" 2>/dev/null || true
    say "$label app: launch to interactive $(sed -n 's/.*"launch_to_interactive_ms": *\([0-9]*\).*/\1/p' "$work/e2e-$label/perf.json") ms"
    kill -- "-$group" 2>/dev/null || true
    group=""
}
home="$work/home"
mkdir -p "$home" "$root$work" "$root/tmp/.X11-unix"
mount --bind "$work" "$root$work"
mounted+=("$root$work")
mount --bind /tmp/.X11-unix "$root/tmp/.X11-unix"
mounted+=("$root/tmp/.X11-unix")
run_e2e installed-deb /usr/bin/finetune-app "$root/root/.local/share/finetune/runs" "$root"

# ---------------------------------------------------------------- the AppImage
place_model "$home/.cache/huggingface"
hidden() {
    env -i HOME="$home" PATH=/usr/bin:/bin DISPLAY="$DISPLAY" HF_HUB_OFFLINE=1 \
        APPIMAGE_EXTRACT_AND_RUN=1 FINETUNE_CACHE="$work/no-cache" "$@"
}
say "AppImage: $(hidden "$appimage" ft --version)"
hidden "$appimage" ft device >"$work/device-appimage.txt" || die "ft device failed from the AppImage"
hidden "$appimage" ft train start --iters 3 --batch-size 2 --max-length 64 --runs-dir "$work/cli-runs" --json \
    >"$work/train-appimage.json" 2>"$work/train-appimage.err" \
    || { tail -20 "$work/train-appimage.err" >&2; die "ft train start failed from the AppImage"; }
grep -q '"event":"finished"' "$work/train-appimage.json" || die "no finished event from the AppImage"
run_e2e appimage "$appimage" "$home/.local/share/finetune/runs" ""
kill "$xvfb" 2>/dev/null || true
say "first run figures: apt-get install ${install_s} s (dependencies preinstalled in the cached root), first ft train start (3 steps) ${first_train_s} s; the apps' launch times above (target/e2e-*/perf.json)"
say "all passed"
