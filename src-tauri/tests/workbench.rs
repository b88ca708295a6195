//! The Model, Dataset, Template, Runs and export commands through Tauri's
//! IPC on the mock runtime, on a tiny model and data written by the tests.

use finetune::fixtures::{write_chat_data, TinyModel};
use finetune_app::with_commands;
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::webview::InvokeRequest;

fn invoke(cmd: &str, args: Value) -> Result<Value, Value> {
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
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|body| body.deserialize::<Value>().unwrap())
}

#[test]
fn templates_are_listed_with_the_models_own_first() {
    let names: Vec<String> = invoke("list_templates", json!({}))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names[0], "model");
    assert!(names.contains(&"chatml".to_string()) && names.contains(&"llama-3".to_string()));
}

#[test]
fn dropped_paths_are_told_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 4);
    let other = tmp.path().join("notes.docx");
    std::fs::write(&other, b"x").unwrap();
    for (path, kind) in [(&model, "model"), (&data, "dataset"), (&other, "unknown")] {
        assert_eq!(
            invoke("classify_path", json!({ "path": path })).unwrap(),
            kind
        );
    }
}

#[test]
fn model_info_and_dataset_inspection_use_the_real_files() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 6);
    let info = invoke("model_info", json!({ "path": model })).unwrap();
    assert_eq!(info["architecture"], "llama");
    assert_eq!(info["layers"], 2);
    assert!(info["parameters"].as_u64().unwrap() > 0);

    let request = json!({ "request": {
        "data": data, "model": model, "template": "chatml", "mask": "completions",
        "max_length": 64, "skip_bad_records": false, "preview": 2,
    }});
    let report = invoke("inspect_dataset", request).unwrap();
    assert_eq!(report["stats"]["records"], 6);
    assert_eq!(report["template"], "chatml");
    let preview = report["previews"][0].as_array().unwrap();
    assert!(preview
        .iter()
        .any(|p| p[1] == true && p[0].as_str().unwrap().contains("well hello")));

    let broken = tmp.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"text\": \"ok\"}\n{\"text\": \n").unwrap();
    let request = json!({ "request": {
        "data": broken, "model": model, "template": null, "mask": null,
        "max_length": 64, "skip_bad_records": false, "preview": 1,
    }});
    let err = invoke("inspect_dataset", request).unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("broken.jsonl:2:"),
        "{err}"
    );
}

#[test]
fn runs_are_listed_and_a_missing_run_cannot_be_exported() {
    let runs = tempfile::tempdir().unwrap();
    // SAFETY: this is the only test in this binary that reads FINETUNE_RUNS.
    unsafe { std::env::set_var("FINETUNE_RUNS", runs.path()) };
    assert_eq!(invoke("list_runs", json!({})).unwrap(), json!([]));
    let err = invoke("gguf_sizes", json!({ "id": "nope" })).unwrap_err();
    assert!(
        err["message"].as_str().unwrap().contains("no run `nope`"),
        "{err}"
    );
}

#[test]
fn the_plan_sizes_a_run_before_it_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 8);
    let request = json!({ "request": {
        "model": model, "data": data, "iters": 3, "batch_size": 2, "learning_rate": 0.001,
        "lora_rank": 4, "lora_alpha": 8.0, "max_length": 64, "steps_per_eval": 0,
    }});
    let plan = invoke("plan_training", request.clone()).unwrap();
    assert_eq!(plan["train_examples"], 8);
    assert_eq!(plan["total_steps"], 3);
    assert_eq!(plan["batch_size"], 2);
    assert!(plan["memory_estimate"]["total"].as_u64().unwrap() > 0);
    assert!(plan["available_memory"].as_u64().unwrap() > 0);

    // The advanced settings reach the engine: full fine-tuning trains the
    // projections' weights (more parameters than rank-4 adapters).
    let mut full = request.clone();
    full["request"]["full"] = json!(true);
    full["request"]["optimizer"] = json!("adafactor");
    full["request"]["precision"] = json!("float32");
    let full_plan = invoke("plan_training", full).unwrap();
    let trainable = |p: &Value| p["trainable_parameters"].as_u64().unwrap();
    assert!(trainable(&full_plan) > 2 * trainable(&plan));
    // Checkpointing keeps less of the forward pass, and the estimate says so.
    let mut checkpointed = request.clone();
    checkpointed["request"]["grad_checkpoint"] = json!(true);
    let checkpointed_plan = invoke("plan_training", checkpointed).unwrap();
    let activations = |p: &Value| p["memory_estimate"]["activations"].as_u64().unwrap();
    assert!(activations(&checkpointed_plan) < activations(&plan));
    let mut bad = request;
    bad["request"]["optimizer"] = json!("rmsprop");
    assert!(invoke("plan_training", bad).is_err());
}

#[test]
fn prompt_only_data_is_reported_as_prompts_and_planned_for_grpo() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = tmp.path().join("prompts.jsonl");
    let lines: Vec<String> = (0..10)
        .map(|i| {
            format!(
                "{{\"question\":\"What is {i}+{i}?\",\"answer\":\"#### {}\"}}",
                2 * i
            )
        })
        .chain(["{\"prompt\":\"Name a prime.\"}".to_string()])
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let request = json!({ "request": {
        "data": data, "model": model, "template": "chatml", "mask": null,
        "max_length": 64, "skip_bad_records": false, "preview": 2,
    }});
    let report = invoke("inspect_dataset", request).unwrap();
    assert_eq!(report["prompts"], 11);
    assert_eq!(report["prompt_answers"], 10);
    assert_eq!(report["pairs"], 0);
    assert_eq!(report["stats"]["records"], 11);
    assert_eq!(report["stats"]["trained_tokens"], 0);
    assert_eq!(report["answers"], json!(["#### 0", "#### 2"]));
    let first = report["previews"][0].as_array().unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0][0].as_str().unwrap().contains("What is 0+0?"));
    assert_eq!(first[0][1], false);

    // The plan counts prompts, batches of them, and rows of group_size each.
    let plan_request = |group: usize| {
        json!({ "request": {
            "model": model, "data": data, "iters": 2, "batch_size": 2, "learning_rate": 0.001,
            "lora_rank": 4, "lora_alpha": 8.0, "max_length": 64, "steps_per_eval": 0,
            "method": "grpo", "group_size": group, "max_completion_length": 16,
            "rewards": [{"regex": {"pattern": "[0-9]"}}],
        }})
    };
    let plan = invoke("plan_training", plan_request(2)).unwrap();
    assert_eq!(plan["train_examples"], 11);
    assert_eq!(plan["total_steps"], 2);
    assert_eq!(plan["batch_size"], 2);
    let bigger = invoke("plan_training", plan_request(8)).unwrap();
    let activations = |p: &Value| p["memory_estimate"]["activations"].as_u64().unwrap();
    assert!(activations(&bigger) > activations(&plan));
    // The engine's refusals come back as they are: exact match needs every
    // prompt's answer, and the one without says where it is.
    let mut exact = plan_request(2);
    exact["request"]["rewards"] = json!([{"exact_match": {}}]);
    let err = invoke("plan_training", exact).unwrap_err();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("prompts.jsonl:11"),
        "{err}"
    );
}

/// Calls `download_model` and collects what it reports.
fn download(id: &str) -> (Result<String, String>, Vec<serde_json::Value>) {
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
    let result = tauri::async_runtime::block_on(finetune_app::workbench::download_model(
        id.to_string(),
        channel,
    ))
    .map_err(|e| e.to_string());
    let events = seen.lock().unwrap().clone();
    (result, events)
}

#[test]
fn a_cached_hub_model_resolves_without_the_network_and_paths_pass_through() {
    let tmp = tempfile::tempdir().unwrap();
    // A Hugging Face cache holding `tiny/model` at revision abc.
    let repo = tmp.path().join("models--tiny--model");
    let snapshot = repo.join("snapshots/abc");
    let written = TinyModel::default().write(&tmp.path().join("fixture"));
    std::fs::create_dir_all(&snapshot).unwrap();
    for file in std::fs::read_dir(&written).unwrap().flatten() {
        std::fs::copy(file.path(), snapshot.join(file.file_name())).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc").unwrap();
    std::env::set_var("HF_HUB_CACHE", tmp.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let (result, events) = download("tiny/model");
    assert_eq!(result.unwrap(), snapshot.display().to_string());
    assert!(
        events.is_empty(),
        "a cached model downloads nothing: {events:?}"
    );

    // Offline and not cached: the error says why and what to do.
    let (result, _) = download("tiny/absent");
    let message = result.unwrap_err();
    assert!(message.contains("HF_HUB_OFFLINE"), "{message}");

    // A local folder is used as it is; nonsense is refused.
    let folder = snapshot.display().to_string();
    assert_eq!(download(&folder).0.unwrap(), folder);
    assert!(download("not a hub id")
        .0
        .unwrap_err()
        .contains("not a hub id"));
}
