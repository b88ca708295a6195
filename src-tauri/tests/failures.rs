//! The app survives failure: a panic on the training thread (here, in the
//! observer that forwards events to the window) ends the run as `failed`,
//! empties the job, and a new run can start; a run another process holds
//! cannot be resumed from the window.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finetune::runs::Run;
use finetune::train::TrainEvent;
use finetune_app::history::list_runs;
use finetune_app::training::{resume_run, start_training, StartRequest, TrainingState};
use serde_json::json;
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::test::{mock_builder, mock_context, noop_assets};
use tauri::Manager;

type Events = Arc<Mutex<Vec<TrainEvent>>>;

/// A channel that records events; with `panic_on_step`, its callback
/// panics at the first step, as a broken observer would.
fn channel(panic_on_step: bool) -> (Channel<TrainEvent>, Events) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let panicked = AtomicBool::new(false);
    let channel = Channel::new(move |body: InvokeResponseBody| {
        if let InvokeResponseBody::Json(text) = body {
            let event: TrainEvent = serde_json::from_str(&text).unwrap();
            let is_step = matches!(event, TrainEvent::Step { .. });
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(event);
            if panic_on_step && is_step && !panicked.swap(true, Ordering::SeqCst) {
                panic!("injected fault in the observer");
            }
        }
        Ok(())
    });
    (channel, events)
}

fn wait_for(events: &Events, what: impl Fn(&TrainEvent) -> bool) {
    let start = Instant::now();
    while !events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(&what)
    {
        assert!(start.elapsed() < Duration::from_secs(120), "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn request(model: &std::path::Path, data: &std::path::Path, iters: usize) -> StartRequest {
    serde_json::from_value(json!({
        "model": model, "data": data, "iters": iters, "batch_size": 2, "learning_rate": 0.01,
        "lora_rank": 4, "lora_alpha": 8.0, "max_length": 64, "steps_per_eval": 0
    }))
    .unwrap()
}

#[test]
fn a_panic_in_training_fails_the_run_and_the_app_stays_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    // SAFETY: set before any thread of this test process reads it (one
    // test per binary).
    unsafe { std::env::set_var("FINETUNE_RUNS", &runs) };
    let model = finetune::fixtures::TinyModel::default().write(tmp.path());
    let data = finetune::fixtures::write_chat_data(tmp.path(), 8);
    let app = mock_builder()
        .manage(TrainingState::default())
        .build(mock_context(noop_assets()))
        .unwrap();

    let (broken, events) = channel(true);
    let id = start_training(request(&model, &data, 400), broken, app.state()).unwrap();
    wait_for(&events, |e| matches!(e, TrainEvent::Failed { .. }));
    let failed = events.lock().unwrap().clone();
    let Some(TrainEvent::Failed { error }) = failed.last() else {
        panic!("{failed:?}");
    };
    assert!(error.contains("injected fault in the observer"), "{error}");
    assert!(!error.contains(".rs:"), "no source locations: {error}");
    // The run's own record says so too, and its lock is released.
    let run = Run::open(&runs, &id).unwrap();
    assert!(run
        .read_events()
        .unwrap()
        .iter()
        .any(|e| matches!(e, TrainEvent::Failed { .. })));
    let start = Instant::now();
    while run.in_use().is_some() {
        assert!(start.elapsed() < Duration::from_secs(10), "lock kept");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The window's commands work, and a new run starts and finishes.
    let history = tauri::async_runtime::block_on(list_runs(app.state())).unwrap();
    let entry = history.iter().find(|r| r.id == id).unwrap();
    assert_eq!(entry.status, "failed");
    let (ok, done) = channel(false);
    start_training(request(&model, &data, 3), ok, app.state()).unwrap();
    wait_for(&done, |e| matches!(e, TrainEvent::Finished { .. }));

    // A run held by another process (here a lock taken by this test, as
    // `ft train` would hold it) is shown running and cannot be resumed.
    let held = Run::open(&runs, &id).unwrap().lock().unwrap();
    let (c, _) = channel(false);
    let refused = resume_run(id.clone(), c, app.state())
        .expect_err("resumed a run in use")
        .to_string();
    assert!(refused.contains("in use by process"), "{refused}");
    let history = tauri::async_runtime::block_on(list_runs(app.state())).unwrap();
    let entry = history.iter().find(|r| r.id == id).unwrap();
    assert_eq!(entry.status, "running");
    assert!(!entry.resumable);
    drop(held);
}
