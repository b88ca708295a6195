//! Training from the window's commands: a tiny model trains on its own
//! thread and streams events through a real `Channel`; stop ends it cleanly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finetune::train::TrainEvent;
use finetune_app::training::{start_training, stop_training, StartRequest, TrainingState};
use serde_json::json;
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::test::{mock_builder, mock_context, noop_assets};
use tauri::Manager;

fn fixture(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let model = finetune::fixtures::TinyModel::default().write(dir);
    let data = finetune::fixtures::write_chat_data(dir, 8);
    (model, data)
}

fn collect() -> (Channel<TrainEvent>, Arc<Mutex<Vec<TrainEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let channel = Channel::new(move |body: InvokeResponseBody| {
        if let InvokeResponseBody::Json(text) = body {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(&text).unwrap());
        }
        Ok(())
    });
    (channel, events)
}

fn wait_for(events: &Arc<Mutex<Vec<TrainEvent>>>, what: impl Fn(&TrainEvent) -> bool) {
    let start = Instant::now();
    while !events.lock().unwrap().iter().any(&what) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out; got {:?}",
            events.lock().unwrap()
        );
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
fn a_run_streams_events_and_a_second_start_is_refused_until_it_ends() {
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: set before any thread of this test process reads it.
    unsafe { std::env::set_var("FINETUNE_RUNS", tmp.path().join("runs")) };
    let (model, data) = fixture(tmp.path());
    let app = mock_builder()
        .manage(TrainingState::default())
        .build(mock_context(noop_assets()))
        .unwrap();

    let (channel, events) = collect();
    let id = start_training(request(&model, &data, 400), channel, app.state()).unwrap();
    assert!(tmp
        .path()
        .join("runs")
        .join(&id)
        .join("config.yaml")
        .exists());
    wait_for(&events, |e| matches!(e, TrainEvent::Step { .. }));

    let (second, _) = collect();
    let busy = start_training(request(&model, &data, 1), second, app.state()).unwrap_err();
    assert!(busy.to_string().contains("already in progress"));

    stop_training(app.state()).unwrap();
    wait_for(&events, |e| matches!(e, TrainEvent::Stopped { .. }));
    let got = events.lock().unwrap().clone();
    assert!(matches!(
        got.first(),
        Some(TrainEvent::Started {
            total_steps: 400,
            ..
        })
    ));
    let steps: Vec<usize> = got
        .iter()
        .filter_map(|e| {
            if let TrainEvent::Step { step, .. } = e {
                Some(*step)
            } else {
                None
            }
        })
        .collect();
    assert!(
        steps.windows(2).all(|w| w[1] == w[0] + 1),
        "every step, in order: {steps:?}"
    );

    // Once stopped, a new run may start and runs to its end.
    let start = Instant::now();
    let (third, done) = collect();
    loop {
        match start_training(request(&model, &data, 2), third.clone(), app.state()) {
            Ok(_) => break,
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    }
    wait_for(&done, |e| matches!(e, TrainEvent::Finished { .. }));
}

/// The `ft` command of this build (beside the test binaries' folder).
fn ft_command() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let ft = exe.parent().unwrap().parent().unwrap().join("ft");
    assert!(
        ft.is_file(),
        "{} is not built: run the workspace's tests (cargo nextest run --workspace)",
        ft.display()
    );
    ft
}

#[test]
fn a_run_spread_over_a_hostfile_streams_rank_0s_events_and_each_ranks_state() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    // SAFETY: set before any thread of this test process reads them.
    unsafe {
        std::env::set_var("FINETUNE_RUNS", &runs);
        std::env::set_var("FINETUNE_FT", ft_command());
    }
    let (model, data) = fixture(tmp.path());
    let hostfile = tmp.path().join("hosts.json");
    std::fs::write(&hostfile, r#"[{"ssh": "localhost"}, {"ssh": "localhost"}]"#).unwrap();
    let app = mock_builder()
        .manage(TrainingState::default())
        .build(mock_context(noop_assets()))
        .unwrap();
    let (channel, events) = collect();
    let mut spread = request(&model, &data, 4);
    spread.hosts = Some(hostfile);
    let id = start_training(spread, channel, app.state()).unwrap();
    wait_for(&events, |e| matches!(e, TrainEvent::Finished { .. }));
    // The ranks leave after rank 0 finished; the last state says so.
    let finished = |e: &TrainEvent| match e {
        TrainEvent::Hosts { hosts } => hosts
            .iter()
            .all(|h| h.state == finetune::distributed::launch::HostState::Finished),
        _ => false,
    };
    wait_for(&events, finished);
    let got = events.lock().unwrap().clone();
    let states: Vec<Vec<_>> = got
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Hosts { hosts } => Some(hosts.iter().map(|h| h.state).collect()),
            _ => None,
        })
        .collect();
    use finetune::distributed::launch::HostState::*;
    assert_eq!(
        states.first(),
        Some(&vec![Starting, Starting]),
        "{states:?}"
    );
    assert!(states.contains(&vec![Training, Training]), "{states:?}");
    let steps = got
        .iter()
        .filter(|e| matches!(e, TrainEvent::Step { .. }))
        .count();
    assert_eq!(steps, 4);
    // Rank 0 recorded the run once (the window records nothing itself).
    let run = finetune::runs::Run::open(&runs, &id).unwrap();
    let recorded = run.read_events().unwrap();
    assert_eq!(
        recorded
            .iter()
            .filter(|e| matches!(e, TrainEvent::Started { warnings, .. }
                if warnings.iter().any(|w| w.contains("data parallel over ring: 2 rank(s)"))))
            .count(),
        1,
        "{recorded:?}"
    );
    assert_eq!(
        recorded
            .iter()
            .filter(|e| matches!(e, TrainEvent::Step { .. }))
            .count(),
        4
    );
}
