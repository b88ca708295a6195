//! FineTune's desktop shell: hosts the web UI in `ui/` and answers its
//! commands with the engine. Long work runs off the main thread.

pub mod chat;
mod commands;
mod error;
pub mod history;
pub mod priority;
pub mod training;
pub mod workbench;

pub use commands::DefaultFile;
pub use error::CommandError;
pub use training::{StartRequest, TrainingState};

/// Registers the commands on a builder, so the app and the mock-runtime
/// tests build the same thing.
pub fn with_commands<R: tauri::Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder
        .manage(TrainingState::default())
        .invoke_handler(tauri::generate_handler![
            commands::device_report,
            commands::default_files,
            commands::versions,
            training::start_training,
            training::pause_training,
            training::resume_training,
            training::stop_training,
            training::resume_run,
            training::plan_training,
            training::read_hostfile,
            workbench::model_info,
            workbench::download_model,
            workbench::list_templates,
            workbench::inspect_dataset,
            workbench::classify_path,
            history::list_runs,
            history::run_events,
            history::export_run,
            history::gguf_sizes,
            chat::chat,
        ])
}

/// Starts the app.
pub fn run() {
    with_commands(tauri::Builder::default())
        // Native open-file dialogs for the model and the dataset.
        .plugin(tauri_plugin_dialog::init())
        .run(tauri::generate_context!())
        .expect("error while running the FineTune window");
}
