// Hide the console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    finetune::blas::shorten_idle_spin();
    finetune_app::run();
}
