//! The Runs panel's export commands on a tiny trained run: the quant
//! picker's sizes are the sizes written, the export reports its progress,
//! and the outcome carries the export check's table.

use finetune::fixtures::{write_chat_data, TinyModel};
use finetune::runs::Run;
use finetune_app::history::{export_run, gguf_sizes};
use serde_json::{json, Value};

/// A tiny model trained for a few steps as a run under `root`.
fn trained_run(root: &std::path::Path) -> Run {
    let mut config = finetune::train::TrainConfig {
        model: TinyModel::default().write(root),
        data: write_chat_data(root, 8),
        iters: Some(8),
        batch_size: 4,
        learning_rate: 1e-2,
        max_length: 64,
        seed: 3,
        ..Default::default()
    };
    let run = Run::create(&root.join("runs"), "export").unwrap();
    config.output = run.adapters_dir();
    run.write_config(&config).unwrap();
    finetune::train::train(&config, &mut |_: &_| {}, &Default::default()).unwrap();
    run
}

/// Calls `export_run` and collects its progress reports.
fn export(id: &str, request: Value) -> (Result<Value, String>, Vec<Value>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    let channel = tauri::ipc::Channel::new(move |body: tauri::ipc::InvokeResponseBody| {
        if let tauri::ipc::InvokeResponseBody::Json(text) = body {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(&text).unwrap());
        }
        Ok(())
    });
    let request = serde_json::from_value(request).unwrap();
    let result = tauri::async_runtime::block_on(export_run(id.to_string(), request, channel))
        .map(|outcome| serde_json::to_value(outcome).unwrap())
        .map_err(|e| e.to_string());
    let events = seen.lock().unwrap().clone();
    (result, events)
}

#[test]
fn a_run_exports_to_gguf_and_ollama_with_sizes_progress_and_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: this is the only test in this binary.
    unsafe { std::env::set_var("FINETUNE_RUNS", tmp.path().join("runs")) };
    let run = trained_run(tmp.path());

    let sizes = tauri::async_runtime::block_on(gguf_sizes(run.id.clone())).unwrap();
    let names: Vec<&str> = sizes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]
    );

    let (outcome, events) = export(&run.id, json!({ "target": "gguf", "quant": "q4_k_m" }));
    let outcome = outcome.unwrap();
    let planned = sizes.iter().find(|c| c.name == "q4_k_m").unwrap().bytes;
    assert_eq!(
        outcome["bytes"],
        json!(planned),
        "the picker's size is the file's"
    );
    assert_eq!(outcome["check"]["passed"], json!(true), "{outcome:#}");
    let rows: Vec<&str> = outcome["check"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["check"].as_str().unwrap())
        .collect();
    for row in ["template", "tokenizer", "greedy", "perplexity", "adapter"] {
        assert!(rows.contains(&row), "{rows:?}");
    }
    let last_tensor = events
        .iter()
        .rfind(|e| e["total"].as_u64().unwrap_or(0) > 0)
        .expect("tensor progress");
    assert_eq!(last_tensor["done"], last_tensor["total"]);
    assert!(events
        .iter()
        .any(|e| e["phase"].as_str().unwrap().contains("checking")));

    let (outcome, _) = export(&run.id, json!({ "target": "ollama", "quant": "q8_0" }));
    let outcome = outcome.unwrap();
    assert_eq!(outcome["check"]["passed"], json!(true), "{outcome:#}");
    let folder = std::path::PathBuf::from(outcome["path"].as_str().unwrap());
    assert!(folder.join("Modelfile").is_file());

    // The same export again is refused, never written over.
    let (again, _) = export(&run.id, json!({ "target": "ollama", "quant": "q8_0" }));
    assert!(again.unwrap_err().contains("already exists"));
}
