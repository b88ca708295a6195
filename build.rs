//! Link-time settings only a final binary can apply (mlx-sys publishes them):
//! the rpath to libmlx and, on Linux CPU, OpenBLAS ahead of the wheel's BLAS.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MLX_LINK_ARGS");
    if let Ok(args) = std::env::var("DEP_MLX_LINK_ARGS") {
        for arg in args.split(';').filter(|a| !a.is_empty()) {
            println!("cargo:rustc-link-arg={arg}");
        }
    }
}
