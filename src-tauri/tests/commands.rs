//! The app's commands through Tauri's IPC, on the mock runtime.

use finetune_app::{with_commands, DefaultFile};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::webview::InvokeRequest;

fn invoke(cmd: &str) -> Result<serde_json::Value, serde_json::Value> {
    let app = with_commands(mock_builder())
        .build(mock_context(noop_assets()))
        .expect("mock app builds");
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("mock window builds");
    get_ipc_response(
        &webview,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::default(),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|body| body.deserialize::<serde_json::Value>().unwrap())
}

#[test]
fn default_files_lists_model_and_dataset_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let models = cache.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("SmolLM2-135M-Instruct.Q4_1.gguf"), b"12345").unwrap();
    // SAFETY: no other test in this binary reads the environment concurrently.
    unsafe { std::env::set_var("FINETUNE_CACHE", cache.path()) };

    let files: Vec<DefaultFile> =
        serde_json::from_value(invoke("default_files").expect("command succeeds")).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].label, "Model");
    assert!(files[0].present);
    assert_eq!(files[0].size_bytes, Some(5));
    assert_eq!(files[1].label, "Dataset");
    assert!(!files[1].present, "no dataset was written");
    assert!(files[1]
        .path
        .starts_with(&cache.path().display().to_string()));

    // An installed app's sample data ships in its resources folder.
    let resources = tempfile::tempdir().unwrap();
    let sample = resources.path().join("sample-data/chitchat");
    std::fs::create_dir_all(&sample).unwrap();
    std::fs::write(sample.join("train.jsonl"), b"{\"text\": \"hi\"}\n").unwrap();
    // SAFETY: as above.
    unsafe { std::env::set_var("FINETUNE_RESOURCES", resources.path()) };
    let files: Vec<DefaultFile> =
        serde_json::from_value(invoke("default_files").expect("command succeeds")).unwrap();
    assert_eq!(files[1].path, sample.display().to_string());
    assert!(files[1].present);
    unsafe { std::env::remove_var("FINETUNE_RESOURCES") };
}

#[test]
fn versions_names_the_app_and_the_mlx_it_loaded() {
    let versions = invoke("versions").expect("command succeeds");
    assert_eq!(versions["app"], env!("CARGO_PKG_VERSION"));
    assert_eq!(versions["mlx"], "0.32.2");
}

#[test]
fn device_report_runs_the_engine_off_the_main_thread() {
    let report = invoke("device_report").expect("command succeeds");
    assert_eq!(report["mlx_version"], "0.32.2");
    assert!(report["matmul"]["gflops"].as_f64().unwrap() > 0.0);
}

#[test]
fn unknown_commands_are_refused() {
    assert!(invoke("no_such_command").is_err());
}
