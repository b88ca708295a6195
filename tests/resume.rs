//! Exact resume: a run killed with SIGKILL and resumed from its checkpoint
//! follows the same loss trajectory, bit for bit, as an uninterrupted run.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{write_chat_data, TinyModel};
use finetune::mlx_rs::Array;
use finetune::runs::list;
use finetune::train::TrainEvent;

const ITERS: &str = "200";

fn start(model: &Path, data: &Path, runs: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ft"));
    cmd.args(["train", "start"])
        .arg(model)
        .arg(data)
        .args(["--iters", ITERS, "--batch-size", "2", "--lora-rank", "4"])
        .args([
            "--learning-rate",
            "0.005",
            "--report-every",
            "1",
            "--checkpoint-every",
            "7",
        ])
        .args(["--val-every", "0", "--json", "--runs-dir"])
        .arg(runs);
    cmd
}

fn losses(events: &[TrainEvent]) -> BTreeMap<usize, f32> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { step, loss, .. } => Some((*step, *loss)),
            _ => None,
        })
        .collect()
}

fn parse(stdout: &[u8]) -> Vec<TrainEvent> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn sigkill_then_resume_continues_the_same_trajectory() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 8);

    // Uninterrupted reference run.
    let reference_runs = tmp.path().join("reference");
    let out = start(&model, &data, &reference_runs).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = losses(&parse(&out.stdout));
    assert_eq!(reference.len(), 200);

    // The same run, killed (SIGKILL) once its checkpoint at step 14 exists.
    let runs = tmp.path().join("runs");
    let mut child = start(&model, &data, &runs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut before_kill = Vec::new();
    for line in reader.lines() {
        let event: TrainEvent = serde_json::from_str(&line.unwrap()).unwrap();
        let checkpointed = matches!(&event, TrainEvent::Checkpoint { step, path } if *step >= 14 && path.contains("step-"));
        before_kill.push(event);
        if checkpointed {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    let killed_at = losses(&before_kill).keys().max().copied().unwrap();
    assert!(killed_at < 200, "the run was killed before its end");

    let run = &list(&runs).unwrap()[0];
    let out = Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(["train", "resume", &run.id, "--json", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = parse(&out.stdout);
    let Some(TrainEvent::Started {
        resumed_from_step: Some(from),
        ..
    }) = resumed.first()
    else {
        panic!("no resumed start: {:?}", resumed.first());
    };
    assert!(*from >= 14 && from % 7 == 0, "resumed from step {from}");
    let after = losses(&resumed);
    assert_eq!(after.keys().next(), Some(&(from + 1)));
    assert_eq!(after.keys().last(), Some(&200));
    for (step, loss) in &after {
        assert_eq!(
            loss.to_bits(),
            reference[step].to_bits(),
            "step {step}: {loss} vs {}",
            reference[step]
        );
    }

    // Same final adapters, bit for bit.
    let reference_run = &list(&reference_runs).unwrap()[0];
    let a =
        Array::load_safetensors(reference_run.adapters_dir().join("adapters.safetensors")).unwrap();
    let b = Array::load_safetensors(run.adapters_dir().join("adapters.safetensors")).unwrap();
    assert_eq!(a.len(), b.len());
    for (key, value) in &a {
        assert_eq!(value.as_slice::<f32>(), b[key].as_slice::<f32>(), "{key}");
    }
    // events.jsonl holds both sessions.
    let recorded = run.read_events().unwrap();
    assert_eq!(
        recorded
            .iter()
            .filter(|e| matches!(e, TrainEvent::Started { .. }))
            .count(),
        2
    );
}

#[test]
fn resume_without_a_checkpoint_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 8);
    let config = finetune::train::TrainConfig {
        model,
        data,
        checkpoint_dir: Some(tmp.path().join("checkpoints")),
        output: tmp.path().join("adapters"),
        iters: Some(2),
        ..Default::default()
    };
    let mut observer = |_: &TrainEvent| {};
    let err = finetune::train::resume(&config, &mut observer, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no checkpoint to resume from"), "{err}");
}

/// Two processes with the same settings produce the same losses, bit for
/// bit (nothing depends on hash-map order or timing).
#[test]
fn two_uninterrupted_runs_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 8);
    let a = losses(&parse(
        &start(&model, &data, &tmp.path().join("a"))
            .output()
            .unwrap()
            .stdout,
    ));
    let b = losses(&parse(
        &start(&model, &data, &tmp.path().join("b"))
            .output()
            .unwrap()
            .stdout,
    ));
    for (step, loss) in &a {
        assert_eq!(
            loss.to_bits(),
            b[step].to_bits(),
            "step {step}: {loss} vs {}",
            b[step]
        );
    }
}
