//! Builds the engine's own MLX CPU kernels (kernels/*.cpp, against the MLX
//! headers mlx-sys publishes) and applies the link-time settings only a final
//! binary can apply: the rpath to libmlx and, on Linux CPU, OpenBLAS ahead of
//! the wheel's BLAS.
use std::env;
use std::path::PathBuf;

fn main() {
    for var in [
        "DEP_MLX_LINK_ARGS",
        "DEP_MLX_INCLUDE",
        "DEP_MLX_MLX_C",
        "DEP_MLX_COMPAT",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=kernels");
    compile_kernels();
    if let Ok(args) = env::var("DEP_MLX_LINK_ARGS") {
        for arg in args.split(';').filter(|a| !a.is_empty()) {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}

fn compile_kernels() {
    let dir = |var: &str| {
        PathBuf::from(env::var(var).unwrap_or_else(|_| panic!("{var} is set by mlx-sys")))
    };
    let include = dir("DEP_MLX_INCLUDE");
    let mlx_c = dir("DEP_MLX_MLX_C");
    let compat = dir("DEP_MLX_COMPAT");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .file("kernels/ft_kernels.cpp")
        .include("kernels")
        .include(&mlx_c)
        .flag("-isystem")
        .flag(include.to_str().expect("utf-8 path"))
        .flag("-include")
        .flag(compat.join("mlx_c_compat.h").to_str().expect("utf-8 path"))
        // Always optimised, even in debug builds: these are the hot loops.
        .opt_level(3)
        .flag_if_supported("-fopenmp-simd")
        // Float compares may then be if-converted: without it GCC leaves
        // every loop with a clamp or a select scalar.
        .flag_if_supported("-fno-trapping-math")
        .flag_if_supported("-Wno-deprecated-declarations")
        .flag_if_supported("-Wno-unused-variable")
        // The 8-float vector helpers are always inlined: no ABI crosses.
        .flag_if_supported("-Wno-psabi");
    if target_os == "macos" {
        build.flag("-mmacosx-version-min=14.0");
    }
    build.compile("ftkernels");
    if target_os == "linux" {
        println!("cargo:rustc-link-lib=dylib=dl");
    }
}
