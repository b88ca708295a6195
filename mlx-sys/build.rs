//! Builds mlx-c (the C API over MLX) against a prebuilt MLX taken from the
//! pinned PyPI wheel, and generates the Rust bindings mlx-rs expects.
//!
//! Inputs (all prepared by `make setup`, see scripts/setup.sh):
//! - `FINETUNE_CACHE` (default `<workspace>/.cache`): the download cache.
//! - `MLX_BACKEND`: `cpu` (default) or `cuda` on Linux; macOS always uses Metal.
//! - `MLX_DIR`: overrides the unpacked wheel's `mlx/` folder (`include/`, `lib/`).
//! - `MLX_C_DIR`: overrides the mlx-c source folder (holding `mlx/c/*.cpp`).
//! - `FINETUNE_DIST=1` (macOS): leave the absolute rpath to the cache out of
//!   the final binaries, for a `.app` that must find only its own
//!   `Contents/Frameworks/libmlx.dylib` (see docs/macos.md).
//!
//! Outputs for crates that link a binary (they must depend on mlx-sys directly
//! to receive them): `DEP_MLX_LIBDIR` and `DEP_MLX_LINK_ARGS` (`;`-separated
//! linker arguments: the rpath, and OpenBLAS ahead of the wheel's slow
//! reference BLAS on Linux CPU); `DEP_MLX_INCLUDE`, `DEP_MLX_MLX_C` and
//! `DEP_MLX_COMPAT` for crates that compile C++ against MLX.

use std::env;
use std::path::{Path, PathBuf};

/// The MLX release mlx-c 0.7.0 (this crate's version) is written against.
const MLX_VERSION: &str = "0.32.2";

fn main() {
    for var in [
        "FINETUNE_CACHE",
        "MLX_BACKEND",
        "MLX_DIR",
        "MLX_C_DIR",
        "FINETUNE_DIST",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=compat");

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let backend = backend(&target_os);
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let cache = env::var_os("FINETUNE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../.cache"));

    let mlx_dir = env::var_os("MLX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join(format!("mlx/{MLX_VERSION}-{backend}/mlx")));
    let mlx_c_dir = env::var_os("MLX_C_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("mlx-c/0.7.0"));
    require(&mlx_dir.join("include/mlx/mlx.h"), "the MLX wheel");
    require(&mlx_c_dir.join("mlx/c/mlx.h"), "the mlx-c sources");
    let include_dir = mlx_dir.join("include");
    let lib_dir = mlx_dir.join("lib");
    let compat_dir = manifest_dir.join("compat");

    compile_mlx_c(&mlx_c_dir, &include_dir, &compat_dir, &target_os);
    generate_bindings(&mlx_c_dir, &compat_dir, &target_arch);

    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    if target_os == "macos" {
        for framework in ["Foundation", "Metal", "QuartzCore", "Accelerate"] {
            println!("cargo:rustc-link-lib=framework={framework}");
        }
        // mlx-sys's own unit-test binary links -lmlx too. GNU ld drops the
        // unused library (--as-needed); Apple's linker keeps its load command,
        // `@rpath/libmlx.dylib` (the wheel's install name), and the wheel's
        // libmlx has no LC_RPATH: without one here dyld aborts that binary
        // before main ("no LC_RPATH's found") and nextest lists nothing.
        // `rustc-link-arg` reaches this package's own binaries and tests only;
        // dependents apply DEP_MLX_LINK_ARGS themselves.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    }
    println!("cargo::metadata=libdir={}", lib_dir.display());
    println!("cargo::metadata=backend={backend}");
    // For crates that compile C++ against MLX (the engine's own kernels).
    println!("cargo::metadata=include={}", include_dir.display());
    println!("cargo::metadata=mlx_c={}", mlx_c_dir.display());
    println!("cargo::metadata=compat={}", compat_dir.display());
    println!(
        "cargo::metadata=link_args={}",
        binary_link_args(&target_os, backend, &mlx_dir).join(";")
    );
}

/// Which wheel to build against.
fn backend(target_os: &str) -> &'static str {
    if target_os == "macos" {
        return "metal";
    }
    match env::var("MLX_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("cpu") => "cpu",
        Ok("cuda") => "cuda",
        Ok(other) => panic!("MLX_BACKEND={other} is not supported: use `cpu` or `cuda`"),
    }
}

fn require(path: &Path, what: &str) {
    if !path.exists() {
        panic!(
            "{what} not found at {}.\nRun `make setup` first (or point MLX_DIR / MLX_C_DIR / \
             FINETUNE_CACHE at an existing copy).",
            path.display()
        );
    }
}

fn compile_mlx_c(mlx_c_dir: &Path, include_dir: &Path, compat_dir: &Path, target_os: &str) {
    let sources_dir = mlx_c_dir.join("mlx/c");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&sources_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", sources_dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "cpp"))
        .collect();
    sources.sort();

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .files(&sources)
        .include(mlx_c_dir)
        .flag("-isystem")
        .flag(include_dir.to_str().expect("utf-8 path"))
        // Fills what this platform's compiler or mlx-c's aarch64-only
        // typedefs leave out (see the header).
        .flag("-include")
        .flag(
            compat_dir
                .join("mlx_c_compat.h")
                .to_str()
                .expect("utf-8 path"),
        )
        .warnings(false)
        .flag_if_supported("-Wno-deprecated-declarations");
    if target_os == "macos" {
        build.flag("-mmacosx-version-min=14.0");
    }
    build.compile("mlxc");
}

fn generate_bindings(mlx_c_dir: &Path, compat_dir: &Path, target_arch: &str) {
    let mut builder = bindgen::Builder::default()
        .header(compat_dir.join("bindgen.h").to_string_lossy())
        .clang_arg(format!("-I{}", mlx_c_dir.display()))
        .allowlist_item("_?mlx_.*")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    if target_arch != "aarch64" {
        // mlx-rs reads `float16_t` as a newtype over the IEEE half bits
        // (what bindgen makes of `__fp16` on aarch64); give x86 the same shape.
        builder = builder.blocklist_type("float16_t").raw_line(
            "#[repr(transparent)]\n#[derive(Debug, Default, Copy, Clone, PartialEq, Eq, Hash)]\n\
             pub struct float16_t(pub u16);",
        );
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed on mlx/c/mlx.h (is libclang installed? `make setup` installs it)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("bindings.rs");
    bindings
        .write_to_file(&out)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// Linker arguments for the final binaries, which only they can apply.
fn binary_link_args(target_os: &str, backend: &str, mlx_dir: &Path) -> Vec<String> {
    let lib_dir = mlx_dir.join("lib");
    let absolute = format!("-Wl,-rpath,{}", lib_dir.display());
    if target_os == "macos" {
        // dyld tries the rpaths in order. A development build finds libmlx
        // (and mlx.metallib beside it) in the cache; inside FineTune.app both
        // binaries (`Contents/MacOS/finetune-app`, `Contents/MacOS/ft`) find
        // `Contents/Frameworks/libmlx.dylib`. Spelled `@loader_path` (the
        // same folder for a main executable) so that it never duplicates the
        // `@executable_path/../Frameworks` tauri-build adds to the app:
        // dyld on macOS 15.4+ refuses a binary with a duplicate LC_RPATH.
        let mut args = Vec::new();
        if env::var("FINETUNE_DIST").as_deref() != Ok("1") {
            args.push(absolute);
        }
        args.push("-Wl,-rpath,@loader_path/../Frameworks".into());
        return args;
    }
    let mut args = vec![absolute];
    if target_os != "linux" {
        return args;
    }
    match backend {
        // The CPU wheel carries a reference BLAS (~5 GFLOP/s). Loading Debian's
        // OpenBLAS first makes its sgemm/cblas symbols win at run time.
        "cpu" => args.insert(
            0,
            "-Wl,--push-state,--no-as-needed,-l:libopenblas.so.0,--pop-state".into(),
        ),
        // The CUDA wheel needs the CUDA 13 libraries from the pip `nvidia-*`
        // packages. libmlx.so finds them itself (its rpath points at
        // `../../nvidia/<component>/lib`, where setup unpacks them), and a
        // bundle built here for a GPU machine finds them at run time
        // (scripts/cuda/ft), so the link must not insist on them. The
        // `$ORIGIN` rpath finds libmlx in a relocated bundle (`bin/ft`,
        // `mlx/lib/`).
        "cuda" => {
            args.push("-Wl,--allow-shlib-undefined".into());
            args.push("-Wl,-rpath,$ORIGIN/../mlx/lib".into());
        }
        _ => {}
    }
    args
}
