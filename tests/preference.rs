//! Preference training (DPO, IPO, ORPO) on the tiny model: the data shapes
//! become pairs, the first DPO step scores ln 2 (the policy starts as the
//! reference), the held-out preference accuracy rises, runs resume
//! exactly, and mismatched data or settings are refused with a reason.

mod common;

use std::path::{Path, PathBuf};

use common::{step_losses, TinyModel};
use finetune::train::{resume, train, Method, TrainConfig, TrainControl, TrainEvent};
use serde_json::json;

/// `n` pairs in the given shape: the chosen answer names a colour the
/// prompt asks for, the rejected one another.
fn write_pairs(dir: &Path, name: &str, n: usize, shape: &str) -> PathBuf {
    let colours = ["red", "blue", "green", "gold"];
    let mut lines = String::new();
    for i in 0..n {
        let want = colours[i % 4];
        let other = colours[(i + 1) % 4];
        let prompt = format!("say {want} {}", i % 3);
        let (chosen, rejected) = (format!("{want} {want}"), format!("{other} no"));
        let record = match shape {
            "strings" => json!({"prompt": prompt, "chosen": chosen, "rejected": rejected}),
            "messages" => json!({
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }),
            "hh" => json!({
                "chosen": format!("\n\nHuman: {prompt}\n\nAssistant: {chosen}"),
                "rejected": format!("\n\nHuman: {prompt}\n\nAssistant: {rejected}"),
            }),
            _ => unreachable!(),
        };
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, lines).unwrap();
    path
}

fn config(tmp: &Path, method: Method, iters: usize) -> TrainConfig {
    TrainConfig {
        model: TinyModel::default().write(tmp),
        data: write_pairs(tmp, "train.jsonl", 16, "messages"),
        valid: Some(write_pairs(tmp, "valid.jsonl", 8, "strings")),
        output: tmp.join("adapters"),
        iters: Some(iters),
        batch_size: 4,
        learning_rate: 2e-2,
        max_length: 64,
        steps_per_report: 1,
        steps_per_eval: iters,
        seed: 5,
        method,
        ..Default::default()
    }
}

fn run(config: &TrainConfig) -> Vec<TrainEvent> {
    let mut events = Vec::new();
    let mut observer = |e: &TrainEvent| events.push(e.clone());
    train(config, &mut observer, &TrainControl::default()).unwrap();
    events
}

fn evals(events: &[TrainEvent]) -> Vec<(f32, finetune::train::PreferenceMetrics)> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Eval {
                val_loss,
                preference: Some(p),
                ..
            } => Some((*val_loss, *p)),
            _ => None,
        })
        .collect()
}

#[test]
fn dpo_starts_at_ln2_and_learns_the_preference() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = config(tmp.path(), Method::Dpo, 12);
    config.steps_per_eval = 0; // only at the end
    let events = run(&config);
    let Some(TrainEvent::Started {
        train_examples,
        valid_examples,
        method,
        ..
    }) = events.first()
    else {
        panic!("no start event")
    };
    assert_eq!(
        (*train_examples, *valid_examples, *method),
        (16, 8, Method::Dpo)
    );
    let losses = step_losses(&events);
    // The adapters start at zero: the policy is the reference, every
    // margin 0, and the loss −log σ(0) = ln 2.
    assert!(
        (losses[0] - std::f32::consts::LN_2).abs() < 1e-5,
        "first DPO loss {}",
        losses[0]
    );
    let first = events
        .iter()
        .find_map(|e| match e {
            TrainEvent::Step {
                preference: Some(p),
                ..
            } => Some(*p),
            _ => None,
        })
        .expect("steps carry preference figures");
    assert!(first.margin.abs() < 1e-5 && first.pairs == 4, "{first:?}");
    let last = *losses.last().unwrap();
    assert!(last < 0.5 * losses[0], "DPO loss {} → {last}", losses[0]);
    let (val_loss, val) = *evals(&events).last().expect("an evaluation");
    assert!(val.pairs == 8, "{val:?}");
    assert!(val.accuracy >= 0.75 && val.margin > 0.0, "held-out {val:?}");
    assert!(
        val_loss < std::f32::consts::LN_2,
        "validation loss {val_loss}"
    );
    // Adapters in mlx-lm's format, as for SFT.
    assert!(tmp.path().join("adapters/adapters.safetensors").exists());
}

#[test]
fn every_method_trains_on_every_shape() {
    for (method, shape) in [
        (Method::Ipo, "strings"),
        (Method::Orpo, "hh"),
        (Method::Dpo, "hh"),
        (Method::Orpo, "messages"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = config(tmp.path(), method, 6);
        config.data = write_pairs(tmp.path(), "train.jsonl", 16, shape);
        // A gentler rate than the other tests': at 2e-2 single batches
        // overshoot, and IPO's squared loss (target 1/(2β) = 5) more so.
        config.learning_rate = if method == Method::Ipo { 2e-3 } else { 5e-3 };
        let events = run(&config);
        let losses = step_losses(&events);
        assert_eq!(losses.len(), 6, "{method} on {shape}");
        assert!(losses.iter().all(|l| l.is_finite()), "{method}: {losses:?}");
        let (val_loss, val) = *evals(&events).last().expect("an evaluation");
        match method {
            // The policy starts as the reference, so every pair's first
            // loss is known: held-out pairs must end below it.
            Method::Dpo | Method::Ipo => {
                let start = losses[0];
                let expected = if method == Method::Dpo {
                    std::f32::consts::LN_2
                } else {
                    25.0
                };
                assert!(
                    (start - expected).abs() < 1e-3,
                    "{method}: first loss {start}"
                );
                assert!(
                    val_loss < start && val.margin > 0.0,
                    "{method} on {shape}: held-out {val_loss} {val:?}, steps {losses:?}"
                );
            }
            _ => assert!(
                losses.last() < losses.first(),
                "{method} on {shape}: {losses:?}"
            ),
        }
        assert_eq!(evals(&events).len(), 1, "{method}");
    }
}

#[test]
fn a_dpo_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = config(tmp.path(), Method::Dpo, 8);
    config.checkpoint_dir = Some(tmp.path().join("checkpoints"));
    config.grad_accumulation = 2;
    config.batch_size = 2;
    let straight = step_losses(&run(&config));
    let control = TrainControl::default();
    let mut first = Vec::new();
    let mut observer = |e: &TrainEvent| {
        if let TrainEvent::Step { step: 3, .. } = e {
            control.cancel();
        }
        first.push(e.clone());
    };
    train(&config, &mut observer, &control).unwrap();
    let mut rest = Vec::new();
    let mut observer = |e: &TrainEvent| rest.push(e.clone());
    resume(&config, &mut observer, &TrainControl::default()).unwrap();
    let mut resumed = step_losses(&first);
    resumed.extend(step_losses(&rest));
    assert_eq!(straight, resumed);
}

/// Gradient checkpointing and the compiled step change how a preference
/// batch is computed, not what: the same losses, rewards and evaluations.
#[test]
fn checkpointing_and_compile_train_the_same_pairs_the_same_way() {
    for (method, change) in [
        (Method::Dpo, "checkpoint"),
        (Method::Orpo, "checkpoint"),
        (Method::Dpo, "compile"),
        (Method::Orpo, "compile"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = config(tmp.path(), method, 6);
        config.steps_per_eval = 3;
        config.compile = Some(false);
        let plain = run(&config);
        match change {
            "checkpoint" => config.grad_checkpoint = true,
            _ => config.compile = Some(true),
        }
        config.output = tmp.path().join("adapters-changed");
        let checkpointed = run(&config);
        let method = format!("{method} with {change}");
        let (a, b) = (step_losses(&plain), step_losses(&checkpointed));
        assert_eq!(a.len(), b.len());
        // The same ops in another order (the compiled step also fuses
        // them): float32 rounding differences only, which six steps at this
        // high learning rate grow to a few 1e-4 of the loss. A wrong loss,
        // mask or reference would be off by far more.
        let close = |x: f32, y: f32| (x - y).abs() < 1e-3 * x.abs().max(1.0);
        for (x, y) in a.iter().zip(&b) {
            assert!(close(*x, *y), "{method}: {a:?} vs {b:?}");
        }
        let (ea, eb) = (evals(&plain), evals(&checkpointed));
        assert_eq!(ea.len(), 2, "{method}: two evaluations");
        for ((la, pa), (lb, pb)) in ea.iter().zip(&eb) {
            assert!(close(*la, *lb), "{method}: {la} vs {lb}");
            assert!(close(pa.margin, pb.margin), "{method}: {pa:?} vs {pb:?}");
            assert_eq!((pa.pairs, pa.accuracy), (pb.pairs, pb.accuracy));
        }
        // The rewards of each step ride along through the checkpointed pass.
        let rewards = |events: &[TrainEvent]| -> Vec<f32> {
            events
                .iter()
                .filter_map(|e| match e {
                    TrainEvent::Step {
                        preference: Some(p),
                        ..
                    } => Some(p.chosen_reward),
                    _ => None,
                })
                .collect()
        };
        let (ra, rb) = (rewards(&plain), rewards(&checkpointed));
        assert_eq!(ra.len(), 6, "{method}: every step reports its rewards");
        for (x, y) in ra.iter().zip(&rb) {
            assert!(close(*x, *y), "{method}: {ra:?} vs {rb:?}");
        }
    }
}

#[test]
fn mismatched_data_and_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = config(tmp.path(), Method::Dpo, 2);
    let fails = |c: &TrainConfig| -> String {
        let mut ignore = |_: &TrainEvent| {};
        match train(c, &mut ignore, &TrainControl::default()) {
            Ok(_) => panic!("trained"),
            Err(e) => e.to_string(),
        }
    };
    // Pairs with SFT, SFT data with DPO.
    let e = fails(&TrainConfig {
        method: Method::Sft,
        valid: None,
        ..base.clone()
    });
    assert!(
        e.contains("preference dataset") && e.contains("--method"),
        "{e}"
    );
    let sft_dir = tmp.path().join("sft");
    std::fs::create_dir_all(&sft_dir).unwrap();
    let e = fails(&TrainConfig {
        data: common::write_chat_data(&sft_dir, 8),
        valid: None,
        ..base.clone()
    });
    assert!(e.contains("has none") && e.contains("chosen"), "{e}");
    // A file mixing the two names the first record that differs.
    let mixed = tmp.path().join("mixed.jsonl");
    let mut text = std::fs::read_to_string(&base.data).unwrap();
    text.push_str("{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}\n");
    std::fs::write(&mixed, text).unwrap();
    let e = fails(&TrainConfig {
        data: mixed,
        valid: None,
        ..base.clone()
    });
    assert!(
        e.contains("mixed.jsonl: record 17") && e.contains("not both"),
        "{e}"
    );
    // A broken pair names its record.
    let broken = tmp.path().join("broken.jsonl");
    std::fs::write(
        &broken,
        "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"b\"}\n",
    )
    .unwrap();
    let e = fails(&TrainConfig {
        data: broken,
        valid: None,
        ..base.clone()
    });
    assert!(
        e.contains("broken.jsonl:1") || e.contains("broken.jsonl: line 1"),
        "{e}"
    );
    assert!(e.contains("the same answer"), "{e}");
    for (change, expected) in [
        (
            TrainConfig {
                packing: true,
                ..base.clone()
            },
            "packing",
        ),
        (
            TrainConfig {
                beta: 0.0,
                ..base.clone()
            },
            "beta",
        ),
        (
            TrainConfig {
                method: Method::Ipo,
                label_smoothing: 0.1,
                ..base.clone()
            },
            "label_smoothing",
        ),
    ] {
        let e = fails(&change);
        assert!(e.contains(expected), "{expected}: {e}");
    }
    let mut full = base.clone();
    full.lora.full = true;
    let e = fails(&full);
    assert!(e.contains("full fine-tuning") && e.contains("orpo"), "{e}");
}
