fn main() {
    // The rpath to libmlx and OpenBLAS ahead of the wheel's BLAS: only the
    // final binary can apply them (published by mlx-sys's build script).
    println!("cargo:rerun-if-env-changed=DEP_MLX_LINK_ARGS");
    if let Ok(args) = std::env::var("DEP_MLX_LINK_ARGS") {
        for arg in args.split(';').filter(|a| !a.is_empty()) {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}
