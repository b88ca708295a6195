//! LoRA training end to end on a tiny random model and a small chat dataset
//! written by the test.

mod common;

use common::{step_losses, tiny_config as config, train_events as run, write_chat_data, TinyModel};
use finetune::data::{read_records, tokenize_record, MaskPolicy};
use finetune::eval::token_nll;
use finetune::model::{self, LoadOptions};
use finetune::train::batches::make_batch;
use finetune::train::{train, TrainControl, TrainEvent};

#[test]
fn loss_falls_when_overfitting_a_tiny_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let events = run(&config(tmp.path(), 30));
    let losses = step_losses(&events);
    assert_eq!(losses.len(), 30);
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < first * 0.5, "loss {first} -> {last}");
    assert!(matches!(
        events.first(),
        Some(TrainEvent::Started {
            total_steps: 30,
            ..
        })
    ));
    assert!(matches!(events.last(), Some(TrainEvent::Finished { .. })));
}

#[test]
fn first_step_loss_is_the_base_models_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 1);
    cfg.batch_size = 8; // one batch holding every example
    let events = run(&cfg);
    let reported = step_losses(&events)[0];

    let loaded = model::load(&cfg.model, &LoadOptions::default()).unwrap();
    let examples: Vec<_> = read_records(&cfg.data, &Default::default())
        .unwrap()
        .records
        .iter()
        .map(|r| {
            tokenize_record(
                r,
                loaded.chat_template.as_ref(),
                &loaded.tokenizer,
                MaskPolicy::Completions,
                64,
            )
            .unwrap()
        })
        .collect();
    let pad = loaded.tokenizer.token_to_id("<|im_end|>").unwrap();
    let rows: Vec<Vec<usize>> = (0..8).map(|i| vec![i]).collect();
    let batch = make_batch(&examples, &rows, pad, 8);
    let mut base = loaded.model;
    let logits = base.forward(&batch.inputs, None).unwrap();
    let nll = token_nll(&logits, &batch.targets).unwrap();
    let total: f32 = nll
        .multiply(&batch.mask)
        .unwrap()
        .sum(None)
        .unwrap()
        .item_exact();
    let expected = total / batch.trained_tokens as f32;
    assert!(
        (reported - expected).abs() < 1e-4,
        "{reported} vs {expected}"
    );
}

#[test]
fn adapters_are_written_in_mlx_lm_format() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 2);
    cfg.lora.rank = 4;
    cfg.lora.alpha = 8.0;
    run(&cfg);
    let weights =
        finetune::mlx_rs::Array::load_safetensors(cfg.output.join("adapters.safetensors")).unwrap();
    // 2 layers x 7 projections x (A, B)
    assert_eq!(weights.len(), 28);
    let a = &weights["model.layers.0.self_attn.q_proj.lora_a"];
    let b = &weights["model.layers.0.self_attn.q_proj.lora_b"];
    assert_eq!(a.shape(), &[64, 4], "lora_a is (in, r)");
    assert_eq!(b.shape(), &[4, 64], "lora_b is (r, out)");
    assert_eq!(
        weights["model.layers.1.mlp.down_proj.lora_a"].shape(),
        &[128, 4]
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cfg.output.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["fine_tune_type"], "lora");
    assert_eq!(config["num_layers"], 2);
    assert_eq!(config["lora_parameters"]["rank"], 4);
    assert_eq!(config["lora_parameters"]["scale"], 2.0);
    assert!(!cfg.output.join("adapters.tmp.safetensors").exists());
}

#[test]
fn trainable_parameters_are_reported_against_the_total() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 1);
    cfg.lora.num_layers = Some(1);
    cfg.lora.targets = vec!["q_proj".into(), "v_proj".into()];
    cfg.lora.rank = 2;
    let events = run(&cfg);
    let Some(TrainEvent::Started {
        trainable_parameters,
        total_parameters,
        ..
    }) = events.first()
    else {
        panic!("no Started event");
    };
    // q: (64x2 + 2x64), v: (64x2 + 2x32) in the last layer only.
    assert_eq!(*trainable_parameters, 64 * 2 + 2 * 64 + 64 * 2 + 2 * 32);
    assert!(*total_parameters > *trainable_parameters * 50);
}

#[test]
fn cancelling_stops_cleanly_and_keeps_the_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), 50);
    let control = TrainControl::default();
    control.cancel();
    let mut events = Vec::new();
    let mut observer = |e: &TrainEvent| events.push(e.clone());
    let summary = train(&cfg, &mut observer, &control).unwrap();
    assert_eq!(summary.steps, 0);
    assert!(matches!(
        events.last(),
        Some(TrainEvent::Stopped { step: 0, .. })
    ));
    assert!(cfg.output.join("adapters.safetensors").exists());
}

#[test]
fn bad_records_name_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 1);
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"messages\": []}\n{\"text\": \"ok\"}\n{not json}\n").unwrap();
    cfg.data = bad;
    let mut observer = |_: &TrainEvent| {};
    let err = train(&cfg, &mut observer, &TrainControl::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.jsonl:1"), "{err}");
    assert!(err.contains("no assistant message"), "{err}");
}

#[test]
fn ft_train_start_records_a_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 8);
    let runs = tmp.path().join("runs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(["train", "start"])
        .arg(&model)
        .arg(&data)
        .args([
            "--iters",
            "3",
            "--batch-size",
            "2",
            "--lora-rank",
            "4",
            "--json",
        ])
        .arg("--runs-dir")
        .arg(&runs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout carries one JSON event per line.
    let stdout = String::from_utf8(out.stdout).unwrap();
    let printed: Vec<TrainEvent> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(matches!(printed.last(), Some(TrainEvent::Finished { .. })));

    let listed = finetune::runs::list(&runs).unwrap();
    assert_eq!(listed.len(), 1);
    let run = &listed[0];
    assert_eq!(
        run.read_events().unwrap(),
        printed,
        "events.jsonl records what was printed"
    );
    let config = run.read_config().unwrap();
    assert_eq!(config.iters, Some(3));
    assert_eq!(config.lora.rank, 4);
    assert_eq!(config.output, run.adapters_dir());
    assert!(run.adapters_dir().join("adapters.safetensors").exists());

    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(["runs", "list", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(
        text.starts_with(&run.id) && text.contains("finished: 3 steps, final loss"),
        "{text}"
    );
}

#[test]
fn ft_train_rejects_a_bad_dataset_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = tmp.path().join("broken.jsonl");
    std::fs::write(&data, "{\"messages\": [{\"role\": \"user\"}]}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(["train", "quick"])
        .arg(&model)
        .arg(&data)
        .arg("--runs-dir")
        .arg(tmp.path().join("runs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.jsonl:1") && stderr.contains("messages[0]"),
        "{stderr}"
    );
}

#[test]
fn early_stopping_keeps_the_best_adapters() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), 40);
    // Validation asks for another answer than training teaches, so its loss
    // rises as training goes on.
    let valid = tmp.path().join("valid.jsonl");
    let record = serde_json::json!({"messages": [
        {"role": "user", "content": "hello 1"},
        {"role": "assistant", "content": "bye now, see you"},
    ]});
    std::fs::write(&valid, format!("{record}\n{record}\n{record}\n{record}\n")).unwrap();
    cfg.valid = Some(valid);
    cfg.steps_per_eval = 1;
    cfg.early_stopping_patience = Some(3);
    let events = run(&cfg);

    let evals: Vec<(usize, f32, bool)> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Eval {
                step,
                val_loss,
                best,
                ..
            } => Some((*step, *val_loss, *best)),
            _ => None,
        })
        .collect();
    let Some(TrainEvent::Stopped { step, reason }) = events.last() else {
        panic!("expected an early stop, got {:?}", events.last());
    };
    assert!(*step < 40 && reason.contains("early stopping"), "{reason}");
    let (best_step, best_loss, _) = evals.iter().rfind(|e| e.2).copied().unwrap();
    assert!(evals.iter().all(|e| e.1 >= best_loss));
    assert_eq!(
        evals.iter().filter(|e| e.0 > best_step).count(),
        3,
        "stopped after 3 evaluations without progress"
    );

    // The best adapters are the weights of the best evaluation, not the last.
    let best =
        finetune::mlx_rs::Array::load_safetensors(cfg.output.join("best/adapters.safetensors"))
            .unwrap();
    let last =
        finetune::mlx_rs::Array::load_safetensors(cfg.output.join("adapters.safetensors")).unwrap();
    let key = "model.layers.0.self_attn.q_proj.lora_b";
    assert_ne!(best[key].as_slice::<f32>(), last[key].as_slice::<f32>());
}
