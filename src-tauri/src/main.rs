// Hide the console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    // The training thread catches its panics and reports the run failed.
    finetune::error::install_panic_hook("FineTune", &["training"]);
    finetune::blas::shorten_idle_spin();
    finetune_app::run();
}
