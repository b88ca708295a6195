//! Data-parallel training on this machine: `ft train start -n 2` (two ranks
//! over MLX's ring backend on loopback, on the CPU) against one process at
//! the same global batch. The ranks split each batch and sum their
//! gradients, so the two runs take the same steps: their losses must agree
//! step by step, and their adapters at the end, within float32 summation
//! order (the sums are taken in another order: 1e-4 relative on the loss,
//! 1e-4 absolute on adapter weights of order 1e-2). A killed rank stops the
//! others with a message naming it; a stopped 2-rank run resumed with 2
//! ranks continues the same trajectory.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{write_chat_data, TinyModel};
use finetune::mlx_rs::Array;
use finetune::runs::{list, Run};
use finetune::train::TrainEvent;

/// Set on a launcher, inherited by its ranks: the runs folder it trains in.
const TAG: &str = "FINETUNE_TEST_RUNS";

fn ft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ft"))
}

fn start(model: &Path, data: &Path, runs: &Path, iters: usize, ranks: usize) -> Command {
    let mut cmd = ft();
    cmd.args(["train", "start"])
        .arg(model)
        .arg(data)
        .args(["--iters", &iters.to_string(), "--batch-size", "4"])
        .args([
            "--lora-rank",
            "4",
            "--learning-rate",
            "0.002",
            "--seed",
            "5",
        ])
        .args(["--report-every", "1", "--checkpoint-every", "2"])
        .args(["--val-every", "0", "--json", "--runs-dir"])
        .arg(runs)
        // Marks the processes of this run (see `ranks_of`).
        .env(TAG, runs);
    if ranks > 1 {
        cmd.args(["-n", &ranks.to_string()]);
    }
    cmd
}

fn succeed(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The one run in `runs`.
fn only_run(runs: &Path) -> Run {
    let mut all = list(runs).unwrap();
    assert_eq!(all.len(), 1, "one run in {}", runs.display());
    Run::open(runs, &all.remove(0).id).unwrap()
}

fn losses(run: &Run) -> Vec<f32> {
    run.read_events()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            TrainEvent::Step { loss, .. } => Some(loss),
            _ => None,
        })
        .collect()
}

fn adapters(run: &Run) -> std::collections::HashMap<String, Array> {
    Array::load_safetensors(run.adapters_dir().join("adapters.safetensors")).unwrap()
}

fn assert_same_losses(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs().max(1.0),
            "step {}: {x} vs {y} ({a:?} vs {b:?})",
            i + 1
        );
    }
}

/// The one runs of two runs folders took the same steps to the same
/// adapters.
fn assert_same_runs(a: &Path, b: &Path) {
    let (a, b) = (only_run(a), only_run(b));
    assert_same_losses(&losses(&a), &losses(&b));
    assert_same_adapters(&a, &b);
}

fn assert_same_adapters(a: &Run, b: &Run) {
    assert_adapters_within(a, b, 1e-4);
}

fn assert_adapters_within(a: &Run, b: &Run, tolerance: f32) {
    let (a, b) = (adapters(a), adapters(b));
    assert_eq!(a.len(), b.len());
    for (name, x) in &a {
        let diff = common::max_abs_diff(x, &b[name]);
        assert!(diff < tolerance, "{name}: adapters differ by {diff}");
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    model: PathBuf,
    data: PathBuf,
    root: PathBuf,
}

fn setup(records: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), records);
    let root = tmp.path().to_path_buf();
    Setup {
        _tmp: tmp,
        model,
        data,
        root,
    }
}

#[test]
fn two_ranks_take_the_steps_of_one_process() {
    // 10 records, batches of 4: the last batch of each epoch holds 2
    // examples, one per rank; 8 steps go round the data four times.
    let s = setup(10);
    let one = s.root.join("one");
    let two = s.root.join("two");
    succeed(start(&s.model, &s.data, &one, 8, 1));
    let out = succeed(start(&s.model, &s.data, &two, 8, 2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("training on 2 rank(s) on this machine (ring backend over loopback)"),
        "{stderr}"
    );
    assert_same_runs(&one, &two);
    let (one, two) = (only_run(&one), only_run(&two));
    // Rank 0 alone wrote the run: one `started`, one `finished`, and the
    // warning that says how the batch was split.
    let events = two.read_events().unwrap();
    let started: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Started { warnings, .. } => Some(warnings),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 1);
    assert!(
        started[0]
            .iter()
            .any(|w| w.contains("data parallel over ring: 2 rank(s)")),
        "{started:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TrainEvent::Finished { .. }))
            .count(),
        1
    );
    // The trained tokens are the whole batch's, not rank 0's share.
    let tokens = |run: &Run| {
        run.read_events()
            .unwrap()
            .into_iter()
            .find_map(|e| match e {
                TrainEvent::Finished { summary } => Some(summary.trained_tokens),
                _ => None,
            })
    };
    assert_eq!(tokens(&one), tokens(&two));
}

#[test]
fn accumulation_packing_dora_qlora_and_checkpointing_compose_with_ranks() {
    // Each setting trained by one process and by 2 ranks at the same global
    // batch: the same steps (the ranks also compare their parameters every
    // step, FINETUNE_CHECK_RANKS=1).
    let s = setup(48);
    let settings: [&[&str]; 3] = [
        &[
            "--grad-accumulation",
            "2",
            "--packing",
            "--max-length",
            "48",
        ],
        &["--dora", "--grad-checkpoint"],
        &["--qlora-bits", "4"],
    ];
    for (i, extra) in settings.iter().enumerate() {
        let one = s.root.join(format!("one-{i}"));
        let two = s.root.join(format!("two-{i}"));
        let mut a = start(&s.model, &s.data, &one, 6, 1);
        a.args(*extra);
        succeed(a);
        let mut b = start(&s.model, &s.data, &two, 6, 2);
        b.args(*extra).env("FINETUNE_CHECK_RANKS", "1");
        succeed(b);
        eprintln!("with {extra:?}:");
        assert_same_runs(&one, &two);
    }
}

/// GRPO's figures at each report: the mean reward and the completions.
fn grpo_figures(run: &Run) -> Vec<(f32, usize)> {
    run.read_events()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            TrainEvent::Step { grpo: Some(g), .. } | TrainEvent::Eval { grpo: Some(g), .. } => {
                Some((g.reward_mean, g.completions))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn grpo_prompts_are_split_across_ranks_with_the_same_samples_and_steps() {
    // Each rank samples every other prompt's group (the samples seeded by
    // the prompt's place in the global batch) and the ranks sum gradients:
    // the same completions, rewards and steps as one process; the held-out
    // prompts are split too, their figures summed.
    let s = setup(2);
    let prompts = s.root.join("grpo-data");
    std::fs::create_dir_all(&prompts).unwrap();
    let lines = |n: usize| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "{{\"question\": \"count to {}\", \"answer\": \"{}\"}}\n",
                    i % 5,
                    i % 5
                )
            })
            .collect()
    };
    std::fs::write(prompts.join("train.jsonl"), lines(16)).unwrap();
    std::fs::write(prompts.join("valid.jsonl"), lines(6)).unwrap();
    let grpo = |runs: &Path, ranks: usize| {
        let mut cmd = start(&s.model, &prompts, runs, 4, ranks);
        cmd.args([
            "--method",
            "grpo",
            "--group-size",
            "4",
            "--max-completion-length",
            "6",
        ])
        // A letter the tiny model writes now and then: groups differ.
        .args(["--reward", "regex=e"])
        .env("FINETUNE_CHECK_RANKS", "1");
        succeed(cmd)
    };
    let (one, two) = (s.root.join("one"), s.root.join("two"));
    grpo(&one, 1);
    let out = grpo(&two, 2);
    let (one, two) = (only_run(&one), only_run(&two));
    assert_same_losses(&losses(&one), &losses(&two));
    let (a, b) = (grpo_figures(&one), grpo_figures(&two));
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.1, y.1, "{a:?} vs {b:?}");
        assert!((x.0 - y.0).abs() < 1e-5, "{a:?} vs {b:?}");
    }
    // 4 prompts × 4 completions a step; 6 held-out prompts, one greedy each.
    assert!(
        a.iter().any(|f| f.1 == 16) && a.iter().any(|f| f.1 == 6),
        "{a:?}"
    );
    // Something was learnt: the reward moved, and the loss is not all zero.
    assert!(a[0].0 < a[3].0, "{a:?}");
    assert!(losses(&two).iter().any(|l| l.abs() > 1e-3));
    assert_adapters_within(&one, &two, 1e-3);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 rank(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validation_is_split_across_ranks_and_summed() {
    // 16 records, half held out: two validation batches of 4, one per rank.
    let s = setup(16);
    let losses_of = |ranks: usize| {
        let runs = s.root.join(format!("runs{ranks}"));
        let mut cmd = ft();
        cmd.args(["train", "start"])
            .arg(&s.model)
            .arg(&s.data)
            .args(["--iters", "4", "--batch-size", "4", "--lora-rank", "4"])
            .args([
                "--learning-rate",
                "0.01",
                "--seed",
                "5",
                "--report-every",
                "1",
            ])
            .args([
                "--valid-fraction",
                "0.5",
                "--val-every",
                "2",
                "--json",
                "--runs-dir",
            ])
            .arg(&runs);
        if ranks > 1 {
            cmd.args(["-n", &ranks.to_string()]);
        }
        succeed(cmd);
        only_run(&runs)
            .read_events()
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                TrainEvent::Eval { val_loss, .. } => Some(val_loss),
                _ => None,
            })
            .collect::<Vec<f32>>()
    };
    let (one, two) = (losses_of(1), losses_of(2));
    assert_eq!(one.len(), 2, "{one:?}");
    assert_same_losses(&one, &two);
}

#[test]
fn dpo_pairs_are_split_across_ranks_with_the_same_steps_and_figures() {
    let s = setup(2);
    let data = s.root.join("pairs.jsonl");
    let lines: Vec<String> = (0..16)
        .map(|i| {
            serde_json::json!({
                "prompt": format!("colour {i}?"),
                "chosen": format!("red {i} red"),
                "rejected": format!("blue no {}", "no ".repeat(i % 3)),
            })
            .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    let run_with = |ranks: usize, batch: usize| {
        let runs = s.root.join(format!("dpo{ranks}-{batch}"));
        let mut cmd = ft();
        cmd.args(["train", "start"])
            .arg(&s.model)
            .arg(&data)
            .args([
                "--method",
                "dpo",
                "--iters",
                "4",
                "--batch-size",
                &batch.to_string(),
            ])
            .args([
                "--lora-rank",
                "4",
                "--learning-rate",
                "0.002",
                "--seed",
                "5",
            ])
            .args([
                "--report-every",
                "2",
                "--valid-fraction",
                "0.5",
                "--val-every",
                "2",
            ])
            .args(["--json", "--runs-dir"])
            .arg(&runs);
        if ranks > 1 {
            cmd.args(["-n", &ranks.to_string()]);
        }
        succeed(cmd);
        only_run(&runs)
    };
    // Batches of 1 pair too: rank 1 has no share and only takes part.
    for batch in [4, 1] {
        let (one, two) = (run_with(1, batch), run_with(2, batch));
        assert_same_losses(&losses(&one), &losses(&two));
        // Every rank's pairs count in the figures: the same as one process's.
        let figures = |run: &Run| {
            run.read_events()
                .unwrap()
                .into_iter()
                .filter_map(|e| match e {
                    TrainEvent::Step {
                        preference: Some(p),
                        ..
                    } => Some(("step", p.pairs, p.accuracy, p.margin)),
                    TrainEvent::Eval {
                        val_loss,
                        preference: Some(p),
                        ..
                    } => Some(("eval", p.pairs, p.accuracy, val_loss)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (figures(&one), figures(&two));
        assert_eq!(a.len(), 4, "{a:?}");
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.0, x.1, x.2), (y.0, y.1, y.2), "{a:?} vs {b:?}");
            assert!((x.3 - y.3).abs() < 1e-4, "{a:?} vs {b:?}");
        }
        // DPO's first gradients are tiny (the policy starts as the reference,
        // and lora_b at 0 gives lora_a none at step 1); Adam divides them by
        // their own size, so a summation-order difference in a near-zero
        // gradient moves a weight by a share of the learning rate (2e-3 here):
        // the adapters agree within 1e-3, the losses within 1e-4.
        assert_adapters_within(&one, &two, 1e-3);
    }
}

#[test]
fn bad_data_fails_every_rank_with_the_record_named_and_exit_code_2() {
    let s = setup(2);
    let bad = s.root.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n{\"messages\": 3}\n",
    )
    .unwrap();
    let runs = s.root.join("runs");
    let out = start(&s.model, &bad, &runs, 4, 2).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.jsonl:2"), "{stderr}");
    assert!(
        stderr.contains("on 127.0.0.1 (this machine) exited with code 2"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    only_run(&runs);
    assert!(ranks_of(&runs).is_empty());
}

#[test]
fn ranks_started_as_mlx_launch_starts_them_train_one_run() {
    // Two `ft train start` processes with MLX_RANK and MLX_HOSTFILE set, as
    // mlx.launch sets them: rank 0 keeps the run, rank 1 trains its share.
    let s = setup(10);
    let one = s.root.join("one");
    succeed(start(&s.model, &s.data, &one, 6, 1));
    let hostfile = s.root.join("hosts.json");
    finetune::distributed::write_local_hostfile(&hostfile, 2).unwrap();
    let runs = s.root.join("launched");
    let children: Vec<_> = (0..2)
        .map(|rank| {
            let mut cmd = start(&s.model, &s.data, &runs, 6, 1);
            cmd.env("MLX_RANK", rank.to_string())
                .env("MLX_HOSTFILE", &hostfile)
                .env("FINETUNE_DISTRIBUTED_BACKEND", "ring")
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_same_runs(&one, &runs);
}

#[test]
fn a_run_resumed_with_another_number_of_ranks_says_so_and_keeps_its_steps() {
    let s = setup(10);
    let whole = s.root.join("whole");
    succeed(start(&s.model, &s.data, &whole, 40, 1));
    let whole = only_run(&whole);
    // One process, killed after step 5 (long before its end); resumed by
    // two ranks.
    let runs = s.root.join("runs");
    let mut child = start(&s.model, &s.data, &runs, 40, 1)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = wait_for_steps(&runs, 5, &mut child);
    child.kill().unwrap();
    let _ = child.wait();
    // The ranks leave when their launcher is gone.
    wait_until_no_ranks(&runs);
    let mut resume = ft();
    resume
        .args([
            "train",
            "resume",
            &run.id,
            "--json",
            "-n",
            "2",
            "--runs-dir",
        ])
        .arg(&runs);
    succeed(resume);
    let events = run.read_events().unwrap();
    let (at, from, warnings) = events
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, e)| match e {
            TrainEvent::Started {
                resumed_from_step: Some(k),
                warnings,
                ..
            } => Some((i, *k, warnings.clone())),
            _ => None,
        })
        .expect("a resumed session");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("resumed with 2 rank(s); the run's last session had 1")),
        "{warnings:?}"
    );
    let resumed: Vec<f32> = events[at..]
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect();
    // Another number of ranks sums in another order: the first steps agree
    // within 1e-4; over tens of steps at this learning rate the tiny
    // model's trajectories part (Adam amplifies the rounding), so only
    // those are compared.
    assert_eq!(resumed.len(), 40 - from);
    assert_same_losses(&resumed[..3], &losses(&whole)[from..from + 3]);
}

/// The `ft train rank` processes still running of a launcher started with
/// `start(…, runs, …)`, with their MLX_RANK.
fn ranks_of(runs: &Path) -> Vec<(u32, String)> {
    let tag = format!("{TAG}={}", runs.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains(" train rank") {
            continue;
        }
        // A zombie has exited already.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat.split_whitespace().nth(2) == Some("Z") {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        if !environ.split('\0').any(|v| v == tag) {
            continue;
        }
        let rank = environ
            .split('\0')
            .find_map(|v| v.strip_prefix("MLX_RANK=").map(str::to_string))
            .unwrap_or_default();
        found.push((pid, rank));
    }
    found
}

fn steps_recorded(run: &Run) -> usize {
    std::fs::read_to_string(run.events_path())
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"event\":\"step\""))
                .count()
        })
        .unwrap_or(0)
}

/// Waits until `run_in` holds a run that recorded `steps` steps.
fn wait_for_steps(runs: &Path, steps: usize, child: &mut std::process::Child) -> Run {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(info) = list(runs).ok().and_then(|l| l.into_iter().next()) {
            let run = Run::open(runs, &info.id).unwrap();
            if steps_recorded(&run) >= steps {
                return run;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before step {steps}");
        }
        assert!(Instant::now() < deadline, "no step {steps} in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_rank_stops_the_others_and_is_named() {
    let s = setup(10);
    let runs = s.root.join("runs");
    let mut cmd = start(&s.model, &s.data, &runs, 400, 2);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_steps(&runs, 2, &mut child);
    let ranks = ranks_of(&runs);
    let (pid, _) = ranks
        .iter()
        .find(|(_, r)| r == "1")
        .unwrap_or_else(|| panic!("rank 1 among {ranks:?}"));
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("rank 1 on 127.0.0.1 (this machine) was killed by signal 9")
            && stderr.contains("the other ranks were stopped"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // No rank is left running.
    wait_until_no_ranks(&runs);
}

#[test]
fn a_stopped_two_rank_run_resumes_on_its_trajectory() {
    let s = setup(10);
    let whole = s.root.join("whole");
    succeed(start(&s.model, &s.data, &whole, 40, 2));
    let whole = only_run(&whole);

    // The same run, killed (launcher and ranks) after step 5, long before
    // its end; it resumes from its newest checkpoint (every 2 steps).
    let runs = s.root.join("runs");
    let mut cmd = start(&s.model, &s.data, &runs, 40, 2);
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run = wait_for_steps(&runs, 5, &mut child);
    Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    let _ = child.wait();
    // The ranks leave when their launcher is gone.
    wait_until_no_ranks(&runs);
    let mut resume = ft();
    resume
        .args([
            "train",
            "resume",
            &run.id,
            "--json",
            "-n",
            "2",
            "--runs-dir",
        ])
        .arg(&runs);
    succeed(resume);
    // The resumed session takes the whole run's steps from its checkpoint.
    let events = run.read_events().unwrap();
    let (at, from) = events
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, e)| match e {
            TrainEvent::Started {
                resumed_from_step: Some(k),
                ..
            } => Some((i, *k)),
            _ => None,
        })
        .expect("a resumed session");
    assert!((2..40).contains(&from), "resumed from step {from}");
    let resumed: Vec<f32> = events[at..]
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect();
    assert_same_losses(&resumed, &losses(&whole)[from..]);
    assert_same_adapters(&whole, &run);
}

/// A stand-in for ssh: runs the remote command here, as ssh would run it on
/// the host, and logs the host and the command. Host `gamma` has no model
/// (the settings its rank reads name a folder that is not there); host
/// `delta` has a broken copy of the data (record 2); host `nowhere` cannot
/// be reached.
fn fake_ssh(dir: &Path, model: &Path, data: &Path) -> PathBuf {
    let path = dir.join("fake-ssh");
    let broken = dir.join("data-on-delta.jsonl");
    std::fs::write(
        &broken,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n{\"messages\": 3}\n",
    )
    .unwrap();
    let script = format!(
        r#"#!/bin/bash
while [ $# -gt 0 ]; do
  case "$1" in
    -o) shift 2 ;;
    --) shift; break ;;
    -*) shift ;;
    *) break ;;
  esac
done
host="$1"; shift
echo "$host $*" >> '{log}'
case "${{host#*@}}" in
  nowhere) echo "ssh: Could not resolve hostname nowhere: Name or service not known" >&2; exit 255 ;;
  gamma) exec bash -c "$*" < <(sed -u 's#{model}#/nowhere/model#g') ;;
  delta) exec bash -c "$*" < <(sed -u 's#{data}#{broken}#g') ;;
esac
exec bash -c "$*"
"#,
        log = dir.join("ssh.log").display(),
        model = model.display(),
        data = data.display(),
        broken = broken.display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `start` over the hosts of a hostfile: this machine, then `other`
/// (reached through `fake_ssh`).
fn start_on_hosts(s: &Setup, runs: &Path, iters: usize, other: &str) -> Command {
    let hosts = s.root.join(format!("hosts-{other}.json"));
    std::fs::write(
        &hosts,
        format!(
            r#"[{{"ssh": "localhost", "ips": ["127.0.0.1"]}},
                {{"ssh": "tester@{other}", "ips": ["127.0.0.1"]}}]"#
        ),
    )
    .unwrap();
    let mut cmd = start(&s.model, &s.data, runs, iters, 1);
    cmd.arg("--hosts")
        .arg(&hosts)
        .env("FINETUNE_SSH", fake_ssh(&s.root, &s.model, &s.data));
    cmd
}

fn wait_until_no_ranks(runs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ranks_of(runs).is_empty() {
        assert!(
            Instant::now() < deadline,
            "ranks left: {:?}",
            ranks_of(runs)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ranks_on_other_hosts_start_over_ssh_and_take_the_steps_of_one_process() {
    let s = setup(10);
    let one = s.root.join("one");
    succeed(start(&s.model, &s.data, &one, 6, 1));
    let runs = s.root.join("hosts");
    let out = succeed(start_on_hosts(&s, &runs, 6, "beta"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("training on 2 rank(s), 1 of them on other hosts over ssh"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(s.root.join("ssh.log")).unwrap();
    assert!(
        log.starts_with("tester@beta ")
            && log.contains("MLX_RANK='1'")
            && log.contains("'train' 'rank'"),
        "{log}"
    );
    assert_same_runs(&one, &runs);
}

#[test]
fn a_host_without_the_model_with_bad_data_or_out_of_reach_is_named_and_no_rank_is_left() {
    let s = setup(10);
    let runs = s.root.join("gamma");
    let out = start_on_hosts(&s, &runs, 6, "gamma").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rank 1 on gamma exited with code 2") && stderr.contains("/nowhere/model"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    wait_until_no_ranks(&runs);

    let runs = s.root.join("delta");
    let out = start_on_hosts(&s, &runs, 6, "delta").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("rank 1 on delta exited with code 2")
            && stderr.contains("data-on-delta.jsonl:2"),
        "{stderr}"
    );
    wait_until_no_ranks(&runs);

    let runs = s.root.join("nowhere");
    let out = start_on_hosts(&s, &runs, 6, "nowhere").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("rank 1 on nowhere could not be reached over ssh: ssh: Could not resolve hostname nowhere"),
        "{stderr}"
    );
    wait_until_no_ranks(&runs);
}
