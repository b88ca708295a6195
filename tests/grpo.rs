//! GRPO on the tiny model: sampled completions scored by a reward function
//! teach the model to earn more reward, the run reports its figures and
//! resumes exactly, and settings or data that cannot work are refused with
//! a reason.

mod common;

use std::path::{Path, PathBuf};

use common::TinyModel;
use finetune::train::rewards::RewardSpec;
use finetune::train::{resume, train, GrpoMetrics, Method, TrainConfig, TrainControl, TrainEvent};
use serde_json::json;

fn write_prompts(dir: &Path, name: &str, n: usize, with_answer: bool) -> PathBuf {
    let mut lines = String::new();
    for i in 0..n {
        let mut record = json!({"question": format!("count to {}", i % 5)});
        if with_answer {
            record["answer"] = json!(format!("{}", i % 5));
        }
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    let path = dir.join(name);
    std::fs::write(&path, lines).unwrap();
    path
}

/// A reward a random model earns now and then (a completion that opens with
/// a digit), so that groups have something to compare.
fn config(tmp: &Path, iters: usize) -> TrainConfig {
    TrainConfig {
        model: TinyModel::default().write(tmp),
        data: write_prompts(tmp, "train.jsonl", 16, false),
        valid: Some(write_prompts(tmp, "valid.jsonl", 4, false)),
        output: tmp.join("adapters"),
        iters: Some(iters),
        batch_size: 4,
        // 3e-2 sometimes collapsed the policy (no reward at all) on some
        // machines' rounding; 1e-2 rose on every seed tried (11–14).
        learning_rate: 1e-2,
        max_length: 64,
        steps_per_report: 1,
        steps_per_eval: iters,
        seed: 11,
        method: Method::Grpo,
        group_size: 8,
        max_completion_length: 6,
        rewards: vec![RewardSpec::Regex {
            pattern: "^[0-9]".into(),
            weight: 1.0,
        }],
        ..Default::default()
    }
}

fn run(config: &TrainConfig) -> Vec<TrainEvent> {
    let mut events = Vec::new();
    let mut observer = |e: &TrainEvent| events.push(e.clone());
    train(config, &mut observer, &TrainControl::default()).unwrap();
    events
}

fn step_figures(events: &[TrainEvent]) -> Vec<(usize, f32, GrpoMetrics)> {
    events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step {
                step, loss, grpo, ..
            } => Some((*step, *loss, grpo.clone().expect("grpo figures"))),
            _ => None,
        })
        .collect()
}

#[test]
fn sampled_rewards_rise_and_the_figures_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let events = run(&config(tmp.path(), 40));
    let steps = step_figures(&events);
    assert_eq!(steps.len(), 40);
    let mean = |s: &[(usize, f32, GrpoMetrics)]| {
        s.iter().map(|(_, _, g)| g.reward_mean).sum::<f32>() / s.len() as f32
    };
    let (first, last) = (mean(&steps[..10]), mean(&steps[30..]));
    eprintln!("mean reward: first 10 steps {first:.3}, last 10 {last:.3}");
    assert!(
        last > first + 0.2,
        "the reward should rise: first 10 steps {first:.3}, last 10 {last:.3}"
    );
    for (_, loss, g) in &steps {
        assert!(loss.is_finite());
        assert_eq!(g.completions, 32);
        assert!(g.completion_length >= 1.0 && g.completion_length <= 6.0);
        assert!((0.0..=1.0).contains(&g.clipped_fraction));
        assert_eq!(g.rewards.len(), 1);
        assert!(g.kl.is_some_and(|k| k >= 0.0));
        assert!(g.generation_seconds > 0.0);
    }
    // The policy starts as the reference: no KL at the first step, some later.
    assert!(steps[0].2.kl.unwrap() < 1e-5, "{:?}", steps[0].2.kl);
    assert!(steps[39].2.kl.unwrap() > 1e-4);
    let eval = events.iter().find_map(|e| match e {
        TrainEvent::Eval { val_loss, grpo, .. } => Some((*val_loss, grpo.clone().unwrap())),
        _ => None,
    });
    let (val_loss, metrics) = eval.expect("an evaluation at the end");
    assert_eq!(metrics.completions, 4);
    assert_eq!(val_loss, -metrics.reward_mean);
    assert!(matches!(
        events[0],
        TrainEvent::Started {
            train_examples: 16,
            valid_examples: 4,
            ..
        }
    ));
    assert!(tmp.path().join("adapters/adapters.safetensors").exists());
}

#[test]
fn a_resumed_run_continues_the_same_trajectory() {
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = step_figures(&run(&config(whole_dir.path(), 6)));

    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 6);
    cfg.checkpoint_dir = Some(tmp.path().join("checkpoints"));
    cfg.steps_per_checkpoint = 3;
    let control = TrainControl::default();
    let mut first = Vec::new();
    let stopper = control.clone();
    let mut observer = |e: &TrainEvent| {
        if let TrainEvent::Step { step: 3, .. } = e {
            stopper.cancel();
        }
        first.push(e.clone());
    };
    train(&cfg, &mut observer, &control).unwrap();
    let mut rest = Vec::new();
    let mut observer = |e: &TrainEvent| rest.push(e.clone());
    resume(&cfg, &mut observer, &TrainControl::default()).unwrap();
    let resumed: Vec<_> = step_figures(&first)
        .into_iter()
        .chain(step_figures(&rest))
        .collect();
    assert_eq!(resumed.len(), 6);
    for ((s1, l1, g1), (s2, l2, g2)) in whole.iter().zip(&resumed) {
        assert_eq!(s1, s2);
        assert!((l1 - l2).abs() < 1e-5, "step {s1}: {l1} vs {l2}");
        assert_eq!(g1.reward_mean, g2.reward_mean, "step {s1}");
    }
}

#[test]
fn settings_and_data_that_cannot_work_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fail = |cfg: &TrainConfig| {
        train(cfg, &mut |_: &TrainEvent| {}, &TrainControl::default())
            .unwrap_err()
            .to_string()
    };
    let mut cfg = config(tmp.path(), 1);
    cfg.group_size = 1;
    assert!(fail(&cfg).contains("group_size must be at least 2"));
    let mut cfg = config(tmp.path(), 1);
    cfg.rewards.clear();
    assert!(fail(&cfg).contains("at least one reward"));
    let mut cfg = config(tmp.path(), 1);
    cfg.max_completion_length = 64;
    assert!(fail(&cfg).contains("must be below max_length"));
    let mut cfg = config(tmp.path(), 1);
    cfg.rewards = vec![RewardSpec::ExactMatch {
        pattern: None,
        weight: 1.0,
    }];
    let err = fail(&cfg);
    assert!(
        err.contains("train.jsonl:1") && err.contains("has none"),
        "{err}"
    );
    // With answers, exact match trains.
    cfg.data = write_prompts(tmp.path(), "answered.jsonl", 8, true);
    cfg.valid = Some(write_prompts(tmp.path(), "answered_valid.jsonl", 2, true));
    run(&cfg);
    let mut cfg = config(tmp.path(), 1);
    cfg.data = tmp.path().join("bad.jsonl");
    std::fs::write(&cfg.data, "{\"question\": \"a\"}\n{\"text\": 3}\n").unwrap();
    let err = fail(&cfg);
    assert!(
        err.contains("bad.jsonl:2") && err.contains("no prompt"),
        "{err}"
    );
}
