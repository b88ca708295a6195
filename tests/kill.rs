//! Kills at any moment: a training run is SIGKILLed again and again at
//! random moments (while loading, mid-step, mid-checkpoint), and resumed
//! each time with `ft train resume`. After every kill the run folder must be
//! readable; at the end, every loss it recorded and its final adapters must
//! equal an uninterrupted run's bit for bit.
//!
//! `FINETUNE_KILLS` sets how many kills (8 by default, for `make test`;
//! `make test-kill` runs 60) and `FINETUNE_KILL_SEED` the random moments
//! (printed, so that a failure can be replayed).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{write_chat_data, TinyModel};
use finetune::mlx_rs::Array;
use finetune::runs::{list, Run};
use finetune::train::{checkpoint, TrainEvent};
use rand::{Rng, SeedableRng};

fn ft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ft"))
}

fn start(model: &Path, data: &Path, runs: &Path, iters: usize) -> Command {
    let mut cmd = ft();
    cmd.args(["train", "start"])
        .arg(model)
        .arg(data)
        .args(["--iters", &iters.to_string(), "--batch-size", "2"])
        .args(["--lora-rank", "4", "--learning-rate", "0.005"])
        // Checkpoints every other step, so that many kills land in one.
        .args(["--report-every", "1", "--checkpoint-every", "2"])
        .args(["--val-every", "0", "--json", "--runs-dir"])
        .arg(runs);
    cmd
}

fn resume(run: &Run, runs: &Path) -> Command {
    let mut cmd = ft();
    cmd.args(["train", "resume", &run.id, "--json", "--runs-dir"])
        .arg(runs);
    cmd
}

fn adapters(run: &Run) -> std::collections::HashMap<String, Array> {
    Array::load_safetensors(run.adapters_dir().join("adapters.safetensors")).unwrap()
}

/// Everything a later resume or the app reads must still read.
fn assert_readable(run: &Run, kill: usize) {
    run.read_config()
        .unwrap_or_else(|e| panic!("kill {kill}: config.yaml: {e}"));
    run.read_events()
        .unwrap_or_else(|e| panic!("kill {kill}: events.jsonl: {e}"));
    if let Some(dir) = checkpoint::latest(&run.checkpoints_dir())
        .unwrap_or_else(|e| panic!("kill {kill}: checkpoints: {e}"))
    {
        for file in ["adapters.safetensors", "optimizer.safetensors"] {
            Array::load_safetensors(dir.join(file))
                .unwrap_or_else(|e| panic!("kill {kill}: {}: {e}", dir.join(file).display()));
        }
        let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&state)
            .unwrap_or_else(|e| panic!("kill {kill}: state.json: {e}"));
    }
}

/// The most steps one session may make before it is killed.
const MAX_SESSION_STEPS: usize = 6;

/// Step events recorded so far (a torn last line does not count).
fn recorded_steps(run: &Run) -> usize {
    std::fs::read_to_string(run.events_path())
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"event\":\"step\""))
                .count()
        })
        .unwrap_or(0)
}

/// Whether a kill left a checkpoint half-written (its temporary folder).
fn killed_mid_checkpoint(run: &Run) -> bool {
    std::fs::read_dir(run.checkpoints_dir())
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        })
        .unwrap_or(false)
}

#[test]
fn sigkill_at_random_moments_never_loses_or_changes_the_run() {
    let kills: usize = std::env::var("FINETUNE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("FINETUNE_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{kills} kills, FINETUNE_KILL_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 8);

    // Enough steps that every kill comes before the end: a session is
    // killed after at most MAX_SESSION_STEPS steps.
    let iters = (kills * (MAX_SESSION_STEPS + 2)).max(60);
    let reference_runs = tmp.path().join("reference");
    let spawned = Instant::now();
    let mut child = start(&model, &data, &reference_runs, iters)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_step = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if line.unwrap().contains("\"event\":\"step\"") && first_step.is_none() {
            first_step = Some(spawned.elapsed());
        }
    }
    let total = spawned.elapsed();
    assert!(child.wait().unwrap().success());
    let startup = first_step.expect("the reference run made steps");
    let step_time = (total - startup) / iters as u32;
    let reference_run = &list(&reference_runs).unwrap()[0];
    let reference: Vec<(usize, u32)> = reference_run
        .read_events()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { step, loss, .. } => Some((*step, loss.to_bits())),
            _ => None,
        })
        .collect();
    assert_eq!(reference.len(), iters);

    // Kills come at random moments from the process's start to a few steps
    // past its start-up: some while loading, most mid-step or
    // mid-checkpoint (every other step writes one).
    let span = startup + step_time * 6;
    eprintln!("start-up {startup:?}, {step_time:?} a step: kills within {span:?} of each start");
    let runs = tmp.path().join("runs");
    let mut mid_checkpoint = 0;
    let mut run: Option<Run> = None;
    for kill in 0..kills {
        let mut command = match &run {
            None => start(&model, &data, &runs, iters),
            Some(run) => resume(run, &runs),
        };
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first session runs until its first checkpoint (before it a
        // resume has nothing to resume from), then the random wait.
        if run.is_none() {
            loop {
                std::thread::sleep(Duration::from_millis(5));
                if let Some(r) = list(&runs).unwrap().into_iter().next() {
                    if checkpoint::latest(&r.checkpoints_dir())
                        .ok()
                        .flatten()
                        .is_some()
                    {
                        run = Some(r);
                        break;
                    }
                }
                assert!(child.try_wait().unwrap().is_none(), "the run ended early");
            }
        }
        // The random moment, or sooner when the session has made
        // MAX_SESSION_STEPS steps (a busy machine can make the measured
        // span long against the steps it allows).
        let moment = span.mul_f64(rng.random::<f64>());
        let waited = Instant::now();
        let run = run.as_ref().unwrap();
        let steps_before = recorded_steps(run);
        while waited.elapsed() < moment && recorded_steps(run) < steps_before + MAX_SESSION_STEPS {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "kill {kill}: the run reached its end before {kills} kills"
        );
        if !status.success() && status.code().is_some() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("kill {kill}: ft failed by itself ({status}): {err}");
        }
        mid_checkpoint += killed_mid_checkpoint(run) as usize;
        assert_readable(run, kill);
        assert_eq!(
            run.in_use(),
            None,
            "kill {kill}: the dead process still holds the run"
        );
    }
    let run = run.unwrap();
    // The last session runs to the end.
    let out = resume(&run, &runs).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{kills} kills ({mid_checkpoint} left a checkpoint half-written); \
         {} sessions in events.jsonl",
        run.read_events()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, TrainEvent::Started { .. }))
            .count()
    );

    // Every loss any session recorded is the uninterrupted run's at that
    // step, bit for bit, and every step was reached.
    let events = run.read_events().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for e in &events {
        if let TrainEvent::Step { step, loss, .. } = e {
            assert_eq!(
                loss.to_bits(),
                reference[step - 1].1,
                "step {step}: {loss} vs {}",
                f32::from_bits(reference[step - 1].1)
            );
            seen.insert(*step);
        }
    }
    assert_eq!(seen.len(), iters, "steps reached");
    assert!(events
        .iter()
        .any(|e| matches!(e, TrainEvent::Finished { .. })));
    let (a, b) = (adapters(reference_run), adapters(&run));
    assert_eq!(a.len(), b.len());
    for (key, value) in &a {
        assert_eq!(value.as_slice::<f32>(), b[key].as_slice::<f32>(), "{key}");
    }
}
