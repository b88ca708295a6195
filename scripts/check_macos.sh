#!/usr/bin/env bash
# make check-macos: what can be checked of the macOS build without a Mac, in
# seconds, on Linux or macOS (docs/macos.md says what it covers and what only
# a Mac can show).
#
# 1. The real MLX wheel a Mac builds against, mlx-metal==0.32.2 for
#    macosx_14_0_arm64 (downloaded once, pinned by SHA-256, into
#    ${FINETUNE_CACHE:-.cache}/macos/; the copy `make setup` left in
#    .cache/wheels/ on a Mac is used when it is there). Its libmlx.dylib is
#    read with a small Mach-O reader written below (no otool here): the load
#    commands LC_ID_DYLIB, LC_LOAD_DYLIB (and its weak / re-export /
#    upward kinds), LC_RPATH and LC_BUILD_VERSION.
# 2. This repository: the deployment target, the bundle's configuration, the
#    entitlements, the scripts a Mac runs, setup's checksum helper, the
#    std::format fallback's test, mlx-sys's rpaths. And, from the
#    configuration, the FineTune.app file tree the bundler will make, compared
#    with the tree expected (EXPECTED_APP below, and the same list in
#    docs/macos.md); then dyld's search for @rpath/libmlx.dylib and MLX's for
#    mlx.metallib are replayed on that tree, as `otool -L` / `otool -l` would
#    let one do by hand.
#
# Each check prints PASS or FAIL and one line of reason (TODO: a part of the
# bundle another step provides, not a failure). Exit status 1 on any FAIL.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FINETUNE_CACHE:-$ROOT/.cache}"
PYTHON="${PYTHON:-python3}"
WHEEL_NAME=mlx_metal-0.32.2-py3-none-macosx_14_0_arm64.whl
# From PyPI's JSON for mlx-metal 0.32.2 (the macosx_14_0_arm64 file; setup.sh pins the same).
WHEEL_SHA256=3825fff379dbc107dd3413e564a06caeaa24819910ec49c0439e454c06a1b9b8
# shellcheck source-path=SCRIPTDIR source=lib/sha256.sh
. "$ROOT/scripts/lib/sha256.sh"

wheel=""
for candidate in "$CACHE/macos/$WHEEL_NAME" "$CACHE/wheels/$WHEEL_NAME"; do
  if sha256_matches "$candidate" "$WHEEL_SHA256"; then wheel="$candidate"; break; fi
done
if [ -z "$wheel" ]; then
  mkdir -p "$CACHE/macos"
  echo "check-macos: downloading $WHEEL_NAME (41 MB, once) into $CACHE/macos/"
  req="$(mktemp)"
  printf 'mlx-metal==0.32.2 --hash=sha256:%s\n' "$WHEEL_SHA256" >"$req"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes -r "$req" \
    --platform macosx_14_0_arm64 --python-version 3.11 -d "$CACHE/macos" \
    || { rm -f "$req"; echo "check-macos: could not download mlx-metal==0.32.2 from PyPI" >&2; exit 1; }
  rm -f "$req"
  wheel="$CACHE/macos/$WHEEL_NAME"
  sha256_check "$wheel" "$WHEEL_SHA256" "$WHEEL_NAME"
fi

exec "$PYTHON" - "$ROOT" "$wheel" <<'PY'
import json, os, plistlib, re, struct, sys, zipfile

root, wheel_path = sys.argv[1], sys.argv[2]
failures = 0

def report(ok, name, reason):
    global failures
    status = ok if isinstance(ok, str) else ("PASS" if ok else "FAIL")
    if status == "FAIL":
        failures += 1
    print(f"{status:4}  {name}: {reason}")

def read(rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return f.read()

# The FineTune.app that `make dist` is to produce on a Mac (docs/macos.md
# lists the same tree; the check below compares the two lists).
EXPECTED_APP = [
    "FineTune.app/Contents/Info.plist",
    "FineTune.app/Contents/MacOS/finetune-app",
    "FineTune.app/Contents/MacOS/ft",
    "FineTune.app/Contents/Frameworks/libmlx.dylib",
    "FineTune.app/Contents/Frameworks/mlx.metallib",
    "FineTune.app/Contents/Resources/icon.icns",
    "FineTune.app/Contents/_CodeSignature/CodeResources",
]
MINOS = "14.0"

# ------------------------------------------------------------- Mach-O reader
# mach-o/loader.h: a 64-bit image starts with mach_header_64 (magic
# 0xfeedfacf, cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags,
# reserved: 8 little-endian u32), then ncmds load commands, each starting
# with (cmd, cmdsize). Strings in dylib_command / rpath_command are an
# lc_str: an offset from the command's start to a NUL-terminated path.
# A universal ("fat") file starts with 0xcafebabe (big-endian) and a table of
# slices: (cputype, cpusubtype, offset, size, align).
LC_LOAD_DYLIB, LC_ID_DYLIB = 0xC, 0xD
LC_LOAD_WEAK_DYLIB, LC_RPATH = 0x80000018, 0x8000001C
LC_REEXPORT_DYLIB, LC_LAZY_LOAD_DYLIB, LC_LOAD_UPWARD_DYLIB = 0x8000001F, 0x20, 0x80000023
LC_BUILD_VERSION, LC_VERSION_MIN_MACOSX = 0x32, 0x24
CPU_TYPE_ARM64 = 0x0100000C
MH_DYLIB = 6
PLATFORM_MACOS = 1
LOADS = {LC_LOAD_DYLIB: "LC_LOAD_DYLIB", LC_LOAD_WEAK_DYLIB: "LC_LOAD_WEAK_DYLIB",
         LC_REEXPORT_DYLIB: "LC_REEXPORT_DYLIB", LC_LAZY_LOAD_DYLIB: "LC_LAZY_LOAD_DYLIB",
         LC_LOAD_UPWARD_DYLIB: "LC_LOAD_UPWARD_DYLIB"}

def version(v):  # xxxx.yy.zz packed in nibbles
    major, minor, patch = v >> 16, (v >> 8) & 0xFF, v & 0xFF
    return f"{major}.{minor}" + (f".{patch}" if patch else "")

def macho(data):
    magic = struct.unpack_from(">I", data, 0)[0]
    if magic == 0xCAFEBABE:
        (n,) = struct.unpack_from(">I", data, 4)
        for i in range(n):
            cpu, _, off, size, _ = struct.unpack_from(">iiIII", data, 8 + 20 * i)
            if cpu == CPU_TYPE_ARM64:
                return macho(data[off:off + size])
        raise ValueError("universal file without an arm64 slice")
    magic, cpu, _, filetype, ncmds, sizeofcmds, _, _ = struct.unpack_from("<IiiIIIII", data, 0)
    if magic != 0xFEEDFACF:
        raise ValueError(f"not a 64-bit Mach-O image (magic {magic:#x})")
    info = {"cpu": cpu, "filetype": filetype, "id": None, "loads": [], "rpaths": [], "minos": None,
            "platform": None}
    off = 32
    if 32 + sizeofcmds > len(data):
        raise ValueError("load commands run past the data read")
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<II", data, off)
        if size < 8 or off + size > 32 + sizeofcmds:
            raise ValueError(f"bad load command size {size} at {off}")
        def lc_str(at):
            (rel,) = struct.unpack_from("<I", data, off + at)
            return data[off + rel:off + size].split(b"\0", 1)[0].decode()
        if cmd == LC_ID_DYLIB:
            info["id"] = lc_str(8)
        elif cmd in LOADS:
            info["loads"].append((LOADS[cmd], lc_str(8)))
        elif cmd == LC_RPATH:
            info["rpaths"].append(lc_str(8))
        elif cmd == LC_BUILD_VERSION:
            platform, minos = struct.unpack_from("<II", data, off + 8)
            info["platform"], info["minos"] = platform, version(minos)
        elif cmd == LC_VERSION_MIN_MACOSX:
            (minos,) = struct.unpack_from("<I", data, off + 8)
            info["platform"], info["minos"] = PLATFORM_MACOS, version(minos)
        off += size
    return info

# ------------------------------------------------------------- 1. the wheel
wheel = zipfile.ZipFile(wheel_path)
names = set(wheel.namelist())
LIB, METALLIB = "mlx/lib/libmlx.dylib", "mlx/lib/mlx.metallib"
try:
    with wheel.open(LIB) as f:
        head = f.read(1 << 20)  # the load commands sit in the first pages
    lib = macho(head)
    report(lib["cpu"] == CPU_TYPE_ARM64 and lib["filetype"] == MH_DYLIB, "wheel libmlx.dylib",
           f"64-bit Mach-O, cputype {lib['cpu']:#x} (arm64 = {CPU_TYPE_ARM64:#x}), filetype {lib['filetype']} (dylib = 6)")
except (KeyError, ValueError, struct.error) as e:
    report(False, "wheel libmlx.dylib", f"{LIB} unreadable: {e}")
    lib = None
if lib:
    report(lib["id"] == "@rpath/libmlx.dylib", "install name",
           f"LC_ID_DYLIB {lib['id']!r}: every binary linked with -lmlx records this path and needs an LC_RPATH to resolve it")
    report(not lib["rpaths"], "no LC_RPATH in libmlx",
           "none: the binaries' own rpaths must lead to it" if not lib["rpaths"] else f"found {lib['rpaths']}")
    report(lib["platform"] == PLATFORM_MACOS and lib["minos"] == MINOS, "minimum macOS of libmlx",
           f"LC_BUILD_VERSION platform {lib['platform']} minos {lib['minos']} (want macOS {MINOS})")
    foreign = [p for _, p in lib["loads"] if not p.startswith(("/System/Library/", "/usr/lib/"))]
    report(not foreign, "libmlx needs only system libraries",
           f"{len(lib['loads'])} LC_LOAD_* commands, all under /System/Library or /usr/lib: nothing but libmlx to bundle"
           if not foreign else f"also needs {foreign}: bundle them too")
if METALLIB in names:
    with wheel.open(METALLIB) as f:
        magic = f.read(4)
    report(magic == b"MTLB", "mlx.metallib beside libmlx.dylib",
           f"{METALLIB} ({wheel.getinfo(METALLIB).file_size >> 20} MiB, magic {magic!r}) in the folder of {LIB}, "
           "where MLX's device.cpp looks first (dladdr of libmlx, then its Resources/ subfolder)")
else:
    report(False, "mlx.metallib beside libmlx.dylib", f"{METALLIB} not in the wheel")

# ------------------------------------------------------------- 2. the repository
# The deployment target: .cargo/config.toml [env].
try:
    cargo_cfg = read(".cargo/config.toml")
    try:
        import tomllib
        env = tomllib.loads(cargo_cfg).get("env", {})
        target = env.get("MACOSX_DEPLOYMENT_TARGET")
        target = target.get("value") if isinstance(target, dict) else target
    except ImportError:  # Python < 3.11 (a Mac's /usr/bin/python3 is 3.9)
        m = re.search(r'^MACOSX_DEPLOYMENT_TARGET\s*=\s*(?:\{\s*value\s*=\s*)?"([^"]+)"', cargo_cfg, re.M)
        target = m.group(1) if m else None
    report(target == MINOS, "deployment target (Cargo)",
           f".cargo/config.toml [env] MACOSX_DEPLOYMENT_TARGET = {target!r} (libmlx's minos {MINOS}; Rust's default 11.0)")
except FileNotFoundError:
    report(False, "deployment target (Cargo)", ".cargo/config.toml is missing")
for rel in ["mlx-sys/build.rs", "build.rs"]:
    src = read(rel)
    report(f"-mmacosx-version-min={MINOS}" in src, f"deployment target ({rel})",
           f"the C++ it compiles on macOS gets -mmacosx-version-min={MINOS}")

conf = json.loads(read("tauri.conf.json"))
bundle = conf.get("bundle", {})
mac = bundle.get("macOS", {}) or {}
tauri_dir = os.path.join(root, "src-tauri")  # the bundler resolves paths from here
report(mac.get("minimumSystemVersion") == MINOS, "deployment target (Info.plist)",
       f"tauri.conf.json bundle.macOS.minimumSystemVersion = {mac.get('minimumSystemVersion')!r} "
       f"(Tauri's default 10.13; LSMinimumSystemVersion and MACOSX_DEPLOYMENT_TARGET of a release build)")
report(mac.get("hardenedRuntime", True) is True, "hardened runtime",
       f"bundle.macOS.hardenedRuntime = {mac.get('hardenedRuntime', True)} (codesign --options runtime)")
report(mac.get("signingIdentity") == "-", "signing identity",
       f"bundle.macOS.signingIdentity = {mac.get('signingIdentity')!r}: ad hoc unless APPLE_SIGNING_IDENTITY names one")
ent_rel = mac.get("entitlements")
if ent_rel:
    ent_path = os.path.normpath(os.path.join(tauri_dir, ent_rel))
    try:
        with open(ent_path, "rb") as f:
            raw = f.read()
        ent = plistlib.loads(raw, fmt=plistlib.FMT_XML)
        ok = ent.get("com.apple.security.cs.disable-library-validation") is True
        extra = sorted(k for k in ent if k != "com.apple.security.cs.disable-library-validation")
        report(ok and isinstance(ent, dict), "entitlements",
               f"{os.path.relpath(ent_path, root)} is plist XML; disable-library-validation "
               f"{'set' if ok else 'MISSING'} (ad hoc libmlx, MLX's CPU-compiled kernels)"
               + (f"; also {extra}" if extra else "; nothing else"))
    except FileNotFoundError:
        report(False, "entitlements", f"{ent_rel} (from src-tauri/) does not exist")
    except Exception as e:  # plistlib's errors for bad XML
        report(False, "entitlements", f"{ent_rel} is not a valid XML plist: {e}")
else:
    report(False, "entitlements", "bundle.macOS.entitlements is not set")
report(bundle.get("active") is True and bundle.get("targets") == "all" and bundle.get("icon"),
       "bundle settings for Linux kept", f"bundle.active {bundle.get('active')}, targets {bundle.get('targets')!r}, "
       f"{len(bundle.get('icon') or [])} icons")

# The .app the bundler makes from this configuration (tauri-bundler's
# macos/app.rs): Info.plist; MacOS/<main binary>; Frameworks/<file name> for
# each `frameworks` entry ending in .dylib (tauri-build also adds the rpath
# @executable_path/../Frameworks to the app when the list is not empty);
# `files` as Contents-relative destination -> source; Resources/icon.icns
# from the .icns icon; _CodeSignature when signed (signingIdentity set).
product = conf.get("productName", "FineTune")
app = f"{product}.app/Contents"
predicted = {f"{app}/Info.plist": None, f"{app}/MacOS/finetune-app": None}
if any(i.endswith(".icns") for i in bundle.get("icon") or []):
    predicted[f"{app}/Resources/icon.icns"] = None
if mac.get("signingIdentity"):
    predicted[f"{app}/_CodeSignature/CodeResources"] = None
frameworks = mac.get("frameworks") or []
for fw in frameworks:
    if fw.endswith(".dylib"):
        predicted[f"{app}/Frameworks/{os.path.basename(fw)}"] = os.path.normpath(os.path.join(tauri_dir, fw))
for dest, src in (mac.get("files") or {}).items():
    predicted[f"{app}/{dest.lstrip('/')}"] = os.path.normpath(os.path.join(tauri_dir, src))
for ext in bundle.get("externalBin") or []:  # a sidecar lands in MacOS/ under its base name
    predicted[f"{app}/MacOS/{os.path.basename(ext)}"] = None

lib_src = predicted.get(f"{app}/Frameworks/libmlx.dylib")
metal_src = predicted.get(f"{app}/Frameworks/mlx.metallib")
cache_lib = os.path.join(root, ".cache/mlx/0.32.2-metal/mlx/lib")
report(lib_src is not None and lib_src == os.path.join(cache_lib, "libmlx.dylib"),
       "libmlx.dylib into Contents/Frameworks",
       f"bundle.macOS.frameworks takes {os.path.relpath(lib_src, root) if lib_src else 'nothing'} "
       "(what setup unpacks on a Mac; setup links it to FINETUNE_CACHE when that is elsewhere)")
report(metal_src is not None and lib_src is not None and os.path.dirname(metal_src) == os.path.dirname(lib_src)
       and os.path.basename(metal_src) == "mlx.metallib", "mlx.metallib beside it in the .app",
       f"bundle.macOS.files puts {os.path.relpath(metal_src, root) if metal_src else 'nothing'} at "
       "Contents/Frameworks/mlx.metallib, the wheel's sibling of the dylib")
expected = set(EXPECTED_APP)
missing = sorted(expected - set(predicted))
unexpected = sorted(set(predicted) - expected)
ft_only = missing == [f"{app}/MacOS/ft"]
report("TODO" if ft_only else (not missing and not unexpected), "the .app's file list",
       "the configuration makes every expected file" if not missing and not unexpected else
       ("all but Contents/MacOS/ft, which make dist is to add (its rpath is ready: @loader_path/../Frameworks)"
        if ft_only else f"missing {missing}, unexpected {unexpected}"))
docs_tree = None
try:
    docs = read("docs/macos.md")
    m = re.search(r"<!-- app-tree -->\s*```[a-z]*\n(.*?)```", docs, re.S)
    if m:
        docs_tree = [l.split("#")[0].strip() for l in m.group(1).splitlines() if l.split("#")[0].strip()]
except FileNotFoundError:
    pass
report(docs_tree == EXPECTED_APP, "docs/macos.md lists the same tree",
       "the <!-- app-tree --> block equals EXPECTED_APP" if docs_tree == EXPECTED_APP
       else f"docs/macos.md's <!-- app-tree --> block is {docs_tree}")

# rpaths: what mlx-sys publishes and what the binaries' build scripts apply.
ms = read("mlx-sys/build.rs")
# The macOS branch right after `-lmlx`, before the published metadata.
link_part = ms[ms.find("cargo:rustc-link-lib=dylib=mlx"):ms.find("cargo::metadata=libdir")]
own_test_rpath = 'if target_os == "macos"' in link_part and \
    'println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display())' in link_part
report(bool(own_test_rpath), "mlx-sys's own tests find libmlx on macOS",
       "mlx-sys/build.rs emits cargo:rustc-link-arg=-Wl,-rpath,<wheel>/mlx/lib for its own test binary "
       "(Apple's ld keeps @rpath/libmlx.dylib even unused; dyld: \"no LC_RPATH's found\")"
       if own_test_rpath else "no rustc-link-arg rpath in mlx-sys/build.rs's macOS branch")
bundle_rpath = "@loader_path/../Frameworks" in ms and 'FINETUNE_DIST' in ms
report(bundle_rpath, "final binaries' rpaths on macOS",
       "DEP_MLX_LINK_ARGS: <cache>/mlx/lib (left out with FINETUNE_DIST=1), then @loader_path/../Frameworks"
       if bundle_rpath else "mlx-sys/build.rs does not publish @loader_path/../Frameworks")
appliers = [rel for rel in ["build.rs", "src-tauri/build.rs"] if "DEP_MLX_LINK_ARGS" in read(rel)
            and "rustc-link-arg=" in read(rel)]
report(appliers == ["build.rs", "src-tauri/build.rs"], "ft and finetune-app apply them",
       f"{', '.join(appliers)} turn DEP_MLX_LINK_ARGS into cargo:rustc-link-arg")

# dyld's search, replayed on the predicted .app (dyld: each LC_RPATH in order,
# @loader_path / @executable_path = the binary's folder; then MLX: the
# metallib beside the image dladdr() names).
def resolve(binary, rpaths, install_name, tree):
    folder = os.path.dirname(binary)
    for rp in rpaths:
        cand = os.path.normpath(os.path.join(
            rp.replace("@loader_path", folder).replace("@executable_path", folder),
            install_name.replace("@rpath/", "")))
        if cand in tree:
            return rp, cand
    return None, None
tree = set(predicted) | {f"{app}/MacOS/ft"}
dist_rpaths = ["@loader_path/../Frameworks"]
if lib and lib["id"]:
    results = []
    for exe, rps in [(f"{app}/MacOS/finetune-app", dist_rpaths + (["@executable_path/../Frameworks"] if frameworks else [])),
                     (f"{app}/MacOS/ft", dist_rpaths)]:
        rp, found = resolve(exe, rps, lib["id"], tree)
        metallib = found and os.path.join(os.path.dirname(found), "mlx.metallib")
        results.append((exe, rp, found, metallib in tree if metallib else False))
    ok = all(found and metal for _, _, found, metal in results)
    report(ok, "dyld finds libmlx in the .app, MLX its metallib",
           "; ".join(f"{os.path.basename(e)}: {lib['id']} via {rp} -> {os.path.relpath(f, product + '.app') if f else 'NOT FOUND'}"
                     f"{', metallib beside' if m else ', NO metallib beside'}" for e, rp, f, m in results))

# Scripts a Mac runs: macOS's /bin/bash is 3.2. Every shell script here is
# held to it (the Linux-only ones too: none needs more).
BASH4 = [
    (r"\b(declare|local|typeset)\s+-[a-zA-Z]*[AnlugN]", "associative arrays / namerefs / case attributes (4.0+)"),
    (r"\b(mapfile|readarray)\b", "mapfile / readarray (4.0)"),
    (r"\$\{[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?(,,?|\^\^?)[^}]*\}", "${x,,} / ${x^^} case changes (4.0)"),
    (r";;&|;&\s*$", "case fall-through ;& / ;;& (4.0)"),
    (r"\|&|&>>", "|& or &>> (4.0)"),
    (r"\bcoproc\b", "coproc (4.0)"),
    (r"\$\{[^}]*@[QEPAKaUuL]\}", "${x@Q} transformations (4.4)"),
    (r"shopt\s+-s\s+(globstar|lastpipe|inherit_errexit|autocd)", "shopt options of bash 4+"),
    (r"\b(EPOCHSECONDS|EPOCHREALTIME|BASHPID|SRANDOM)\b", "bash 4/5 variables"),
    (r"\bwait\s+-n\b", "wait -n (4.3)"),
    (r"\[\[\s+-v\s", "[[ -v ]] (4.2)"),
    (r"\$\{[A-Za-z_][A-Za-z0-9_]*\[-[0-9]+\]\}", "negative array index (4.3)"),
    (r"%\([^)]*\)T", "printf %(...)T (4.2)"),
    (r"\{[0-9]+\.\.[0-9]+\.\.[0-9]+\}|\{0[0-9]+\.\.[0-9]+\}", "brace steps / zero padding (4.0)"),
    (r"\bexec\s+\{[A-Za-z_]+\}[<>]", "exec {fd}> (4.1)"),
]
scripts = []
for base in ["scripts", ".ci"]:
    for d, _, files in os.walk(os.path.join(root, base)):
        for fn in files:
            p = os.path.join(d, fn)
            try:
                with open(p, encoding="utf-8") as f:
                    first = f.readline()
                    text = first + f.read()
            except (UnicodeDecodeError, OSError):
                continue
            if fn.endswith(".sh") or re.match(r"#!.*\b(bash|sh)\b", first):
                scripts.append((os.path.relpath(p, root), text))
hits = []
for rel, text in scripts:
    in_heredoc = None
    for n, line in enumerate(text.splitlines(), 1):
        if in_heredoc:  # other languages' text (Python) is not bash
            if line.strip() == in_heredoc:
                in_heredoc = None
            continue
        h = re.search(r"<<-?\s*['\"]?([A-Za-z_]+)['\"]?", line)
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        for pattern, what in BASH4:
            if code and re.search(pattern, code):
                hits.append(f"{rel}:{n}: {what}")
        if h:
            in_heredoc = h.group(1)
report(not hits, "no bash-4-only constructs",
       f"{len(scripts)} shell scripts under scripts/ and .ci/ read; macOS's /bin/bash is 3.2"
       if not hits else "; ".join(hits[:6]) + (f" (+{len(hits) - 6})" if len(hits) > 6 else ""))

# make setup's checksums go through the helper (sha256sum or shasum -a 256).
setup_path = ["scripts/setup.sh", "scripts/fetch_gemma3.sh", "scripts/fetch_llama_vocabs.sh"]
bad = [rel for rel in setup_path
       if re.search(r"^[^#\n]*\bsha256sum\b", read(rel), re.M) or "scripts/lib/sha256.sh" not in read(rel)]
report(not bad, "setup's checksums work without sha256sum",
       "setup.sh, fetch_gemma3.sh, fetch_llama_vocabs.sh source scripts/lib/sha256.sh (sha256sum or shasum -a 256)"
       if not bad else f"{bad} call sha256sum directly or do not source the helper")
setup = read("scripts/setup.sh")
report("sysctl.proc_translated" in setup and "uname -m" in setup, "setup stops on Intel / Rosetta",
       "scripts/setup.sh checks sysctl.proc_translated and uname -m (and macOS >= 14, rustc's host) before downloading")

# The std::format fallback is picked by the library's feature macro.
compat = read("mlx-sys/compat/mlx_c_compat.h")
ok = re.search(r"#if\s+defined\(__cpp_lib_format\)", compat) and "#include <version>" in compat \
    and not re.search(r"#if\s+__has_include\(<format>\)", compat)
report(bool(ok), "std::format fallback chosen by __cpp_lib_format",
       "mlx-sys/compat/mlx_c_compat.h includes <version> and tests __cpp_lib_format (libc++ has <format> before std::format)"
       if ok else "mlx_c_compat.h still decides by __has_include(<format>)")

print(f"check-macos: {'all checks passed' if not failures else f'{failures} check(s) failed'}"
      " (on paper: nothing here ran on a Mac; docs/macos.md)")
sys.exit(1 if failures else 0)
PY
