#!/usr/bin/env bash
# scripts/dist/build.sh — `make dist`: the packages of the platform it runs on.
#
# Linux: a .deb (Tauri's bundler) and an AppImage (made from the .deb's own
# files by scripts/dist/appimage.sh: Tauri's AppImage bundler needs GitHub).
# Both are self-contained for FineTune's part: the MLX wheel's libmlx (with
# the LAPACK/BLAS/gfortran libraries the wheel ships beside it) and Debian's
# OpenBLAS with its gfortran runtime travel inside, under /usr/lib/finetune,
# found through relative rpaths ($ORIGIN), and `ft` ships beside the app in
# /usr/bin. The sample dataset ships in /usr/lib/finetune/sample-data; the
# default model is downloaded on first run (src/paths.rs). WebKitGTK comes
# from the system (the .deb depends on it; the AppImage needs it installed).
#
# macOS: `tauri build` makes the .app and the .dmg (docs/macos.md).
#
#   bash scripts/dist/build.sh            # release build, packages in target/dist/
#   PROFILE=debug bash scripts/dist/build.sh   # faster to build, slower to run
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
PROFILE="${PROFILE:-release}"
OUT="$ROOT/target/dist"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
MLX_DIR="$CACHE/mlx/0.32.2-cpu"
SAMPLE="$CACHE/data/chitchat"
die() { echo "dist: $*" >&2; exit 1; }

# The binaries know nothing of this clone: no path under it is compiled in
# (src/paths.rs, mlx-sys/build.rs read FINETUNE_DIST).
export FINETUNE_DIST=1
profile_flag=()
[[ "$PROFILE" == debug ]] && profile_flag=(--debug)

if [[ "$(uname -s)" == Darwin ]]; then
    (cd src-tauri && npx --prefix ../ui tauri build "${profile_flag[@]}" --bundles app,dmg)
    echo "dist: see target/$PROFILE/bundle/ (docs/macos.md)"
    exit 0
fi

for tool in patchelf dpkg-deb unsquashfs; do
    command -v "$tool" >/dev/null || die "$tool is missing (make dist installs it: apt-get install patchelf dpkg-dev squashfs-tools)"
done
[[ -f "$MLX_DIR/mlx/lib/libmlx.so" ]] || die "no MLX in $MLX_DIR: run make setup"
[[ -f "$SAMPLE/train.jsonl" ]] || die "no sample dataset in $SAMPLE: run make setup"
openblas=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
[[ -e "$openblas" ]] || die "no OpenBLAS at $openblas: run make setup"

echo "dist: building ft and the app ($PROFILE, FINETUNE_DIST=1)"
cargo_profile=()
[[ "$PROFILE" == release ]] && cargo_profile=(--release)
# The web UI first: the app's build embeds ui/dist (a fresh clone has none).
npm --prefix ui run build
# One cargo run for both binaries
# (shared crates compiled once); `tauri bundle` then packs them.
cargo build "${cargo_profile[@]}" -p finetune -p finetune-app --bins --features finetune-app/custom-protocol

# What the packages carry besides the binaries, staged once: the wheel's
# libraries keep their relative layout (libmlx finds its BLAS/LAPACK by its
# own rpath, $ORIGIN/../../mlx_cpu.libs).
stage="$OUT/stage"
rm -rf "$stage"
mkdir -p "$stage/lib/mlx/lib" "$stage/lib/mlx_cpu.libs" "$stage/lib/sample-data"
cp "$MLX_DIR/mlx/lib/libmlx.so" "$stage/lib/mlx/lib/"
cp "$MLX_DIR"/mlx_cpu.libs/*.so* "$stage/lib/mlx_cpu.libs/"
cp -L "$openblas" "$stage/lib/libopenblas.so.0"
for dep in $(readelf -d "$stage/lib/libopenblas.so.0" | sed -n 's/.*NEEDED.*\[\(libgfortran[^]]*\|libquadmath[^]]*\)\].*/\1/p'); do
    cp -L "/usr/lib/x86_64-linux-gnu/$dep" "$stage/lib/$dep"
done
for dep in $(readelf -d "$stage"/lib/libgfortran.so.* 2>/dev/null | sed -n 's/.*NEEDED.*\[\(libquadmath[^]]*\)\].*/\1/p'); do
    cp -L "/usr/lib/x86_64-linux-gnu/$dep" "$stage/lib/$dep"
done
patchelf --set-rpath '$ORIGIN' "$stage"/lib/libopenblas.so.0 "$stage"/lib/libgfortran.so.* 2>/dev/null || true
cp -r "$SAMPLE" "$stage/lib/sample-data/chitchat"

target_dir="$ROOT/target/$PROFILE"
ft_bin="$stage/ft"
cp "$target_dir/ft" "$ft_bin"
# Relative rpaths only: libmlx and OpenBLAS beside the binaries' lib folder.
rpath='$ORIGIN/../lib/finetune/mlx/lib:$ORIGIN/../lib/finetune'
patchelf --set-rpath "$rpath" "$ft_bin"

# Tauri's deb bundler, with the files above mapped into the package; the
# app binary gets its relative rpath after cargo, before bundling.
python3 - "$stage" "$target_dir/finetune-app" "$rpath" >"$OUT/tauri.dist.json" <<'EOF'
import json, os, shlex, sys
stage, app, rpath = sys.argv[1:4]
files = {"/usr/bin/ft": os.path.join(stage, "ft")}
lib = os.path.join(stage, "lib")
for dirpath, _, names in os.walk(lib):
    for name in sorted(names):
        src = os.path.join(dirpath, name)
        files["/usr/lib/finetune/" + os.path.relpath(src, lib)] = src
print(json.dumps({
    "build": {"beforeBundleCommand": "patchelf --set-rpath %s %s" % (shlex.quote(rpath), shlex.quote(app))},
    "bundle": {"linux": {"deb": {"files": files}}},
}, indent=1))
EOF
rm -rf "$target_dir/bundle/deb"
(cd src-tauri && npx --prefix ../ui tauri bundle "${profile_flag[@]}" --bundles deb \
    --features custom-protocol --config "$OUT/tauri.dist.json")
deb=$(ls "$target_dir"/bundle/deb/*.deb 2>/dev/null | head -1)
[[ -n "$deb" ]] || die "tauri build made no .deb"
mkdir -p "$OUT"
cp "$deb" "$OUT/"
deb="$OUT/$(basename "$deb")"

# The AppImage: the .deb's own tree as the AppDir.
appdir="$OUT/FineTune.AppDir"
rm -rf "$appdir"
dpkg-deb -x "$deb" "$appdir"
desktop=$(ls "$appdir"/usr/share/applications/*.desktop | head -1)
cp "$desktop" "$appdir/"
icon_name=$(sed -n 's/^Icon=//p' "$desktop")
icon=$(find "$appdir/usr/share/icons" -name "$icon_name.png" | sort | tail -1)
cp "$icon" "$appdir/$icon_name.png"
cat >"$appdir/AppRun" <<'EOF'
#!/bin/sh
# FineTune's AppImage: the app, or `ft` when called as ft (a symlink named
# ft) or with `ft` as the first argument.
HERE="$(dirname "$(readlink -f "$0")")"
case "$(basename "${ARGV0:-$0}")" in
    ft|ft.*) exec "$HERE/usr/bin/ft" "$@" ;;
esac
if [ "${1:-}" = ft ]; then
    shift
    exec "$HERE/usr/bin/ft" "$@"
fi
exec "$HERE/usr/bin/finetune-app" "$@"
EOF
chmod +x "$appdir/AppRun"
appimage="$OUT/FineTune-$VERSION-x86_64.AppImage"
VERSION="$VERSION" bash scripts/dist/appimage.sh "$appdir" "$appimage"

echo "dist: packages (FineTune $VERSION, $PROFILE):"
for f in "$deb" "$appimage"; do
    printf '  %-60s %s\n' "${f#"$ROOT"/}" "$(du -h "$f" | cut -f1)"
done
