//! The real Gemma 3 270M Q4_K_M GGUF (fetched by setup) through the app's
//! commands on the mock runtime, as a person dropping it on the window
//! uses it: it is recognised as a model, described (tensor types included),
//! trains on its own thread, and the run's result answers in the chat.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finetune::train::TrainEvent;
use finetune_app::training::{start_training, StartRequest};
use finetune_app::with_commands;
use serde_json::{json, Value};
use tauri::ipc::{CallbackFn, Channel, InvokeBody, InvokeResponseBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::Manager;

fn invoke(
    app: &tauri::App<tauri::test::MockRuntime>,
    cmd: &str,
    args: Value,
) -> Result<Value, Value> {
    let webview =
        tauri::WebviewWindowBuilder::new(app, format!("w{}", rand_label()), Default::default())
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

fn rand_label() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn the_gemma3_gguf_is_described_trains_and_chats() {
    let gguf = finetune::paths::cache_dir().join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        gguf.exists(),
        "{} is missing: run `make setup`",
        gguf.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this test process reads it.
    unsafe { std::env::set_var("FINETUNE_RUNS", tmp.path().join("runs")) };
    let data = finetune::fixtures::write_chat_data(tmp.path(), 4);
    let app = with_commands(mock_builder())
        .build(mock_context(noop_assets()))
        .expect("mock app builds");

    assert_eq!(
        invoke(&app, "classify_path", json!({ "path": gguf })).unwrap(),
        "model"
    );
    let info = invoke(&app, "model_info", json!({ "path": gguf })).unwrap();
    assert_eq!(info["architecture"], "gemma3_text");
    assert_eq!(info["layers"], 18);
    assert_eq!(info["vocab_size"], 262144);
    assert_eq!(info["tensor_types"]["Q4_K"], 27);
    assert_eq!(info["tensor_types"]["Q6_K"], 9);

    let events = Arc::new(Mutex::new(Vec::<TrainEvent>::new()));
    let sink = Arc::clone(&events);
    let channel = Channel::new(move |body: InvokeResponseBody| {
        if let InvokeResponseBody::Json(text) = body {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(&text).unwrap());
        }
        Ok(())
    });
    let request: StartRequest = serde_json::from_value(json!({
        "model": gguf, "data": data, "iters": 2, "batch_size": 2, "learning_rate": 1e-4,
        "lora_rank": 4, "lora_alpha": 8.0, "max_length": 48, "steps_per_eval": 0
    }))
    .unwrap();
    let id = start_training(request, channel, app.state()).unwrap();
    let start = Instant::now();
    loop {
        let got = events.lock().unwrap().clone();
        if let Some(TrainEvent::Failed { error }) = got.last() {
            panic!("training failed: {error}");
        }
        if got.iter().any(|e| matches!(e, TrainEvent::Finished { .. })) {
            let losses: Vec<f32> = got
                .iter()
                .filter_map(|e| match e {
                    TrainEvent::Step { loss, .. } => Some(*loss),
                    _ => None,
                })
                .collect();
            assert_eq!(losses.len(), 2, "{got:?}");
            assert!(
                losses.iter().all(|l| l.is_finite() && *l > 0.0),
                "{losses:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "timed out: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The run's result answers (Gemma's turns: the base file has no template).
    let pieces = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&pieces);
    let on_piece = Channel::new(move |body: InvokeResponseBody| {
        if let InvokeResponseBody::Json(text) = body {
            sink.lock()
                .unwrap()
                .push_str(&serde_json::from_str::<String>(&text).unwrap());
        }
        Ok(())
    });
    let request: finetune_app::chat::ChatRequest = serde_json::from_value(json!({
        "model": null, "run": id,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 6, "temperature": 0.0,
    }))
    .unwrap();
    let reply = tauri::async_runtime::block_on(finetune_app::chat::chat(request, on_piece))
        .expect("the run answers");
    assert!(!reply.trim().is_empty(), "an empty reply");
    assert_eq!(reply, *pieces.lock().unwrap());
}
