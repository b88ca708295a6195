//! The `ft` binary itself: help, `train validate` and profiles, `report`,
//! `chat`, `bench`, Ctrl-C, and exit codes on bad input — on tiny models
//! written by the tests.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{write_chat_data, TinyModel};

fn ft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ft"))
}

fn run(args: &[&str]) -> Output {
    ft().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny model, chat data and a YAML config pointing at them.
fn project(tmp: &Path, yaml_extra: &str) -> (PathBuf, PathBuf, PathBuf) {
    let model = TinyModel::default().write(tmp);
    let data = write_chat_data(tmp, 12);
    let yaml = tmp.join("run.yml");
    std::fs::write(
        &yaml,
        format!(
            "model: {}\ndata: {}\niters: 3\nbatch_size: 2\nmax_length: 64\n{yaml_extra}",
            model.display(),
            data.display()
        ),
    )
    .unwrap();
    (model, data, yaml)
}

#[test]
fn every_command_has_help_that_exits_zero() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let text = stdout(&top);
    for command in [
        "device",
        "train",
        "models",
        "convert",
        "export",
        "data",
        "runs",
        "chat",
        "report",
        "bench",
        "completions",
        "generate",
    ] {
        assert!(
            text.contains(command),
            "`{command}` missing from --help:\n{text}"
        );
    }
    for args in [
        &["train", "--help"][..],
        &["train", "start", "--help"],
        &["train", "quick", "--help"],
        &["train", "validate", "--help"],
        &["train", "resume", "--help"],
        &["models", "--help"],
        &["models", "quantize", "--help"],
        &["data", "inspect", "--help"],
        &["data", "preview", "--help"],
        &["data", "split", "--help"],
        &["runs", "--help"],
        &["chat", "--help"],
        &["report", "--help"],
        &["bench", "--help"],
        &["export", "--help"],
        &["generate", "--help"],
        &["device", "--help"],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    // Bad usage is exit code 2 with clap's message, not a panic.
    let o = run(&["train", "start", "--iters", "many"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn train_validate_prints_the_plan_and_estimates() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, yaml) = project(tmp.path(), "lora:\n  rank: 4\n");
    let o = run(&["train", "validate", s(&yaml), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(plan["train_examples"], 12);
    assert_eq!(plan["total_steps"], 3);
    assert_eq!(plan["batch_size"], 2);
    assert!(plan["memory_estimate"]["total"].as_u64().unwrap() > 0);
    assert!(plan["estimated_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(plan["config"]["lora"]["rank"], 4);

    let o = run(&["train", "validate", s(&yaml)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("valid") && text.contains("memory") && text.contains("time"),
        "{text}"
    );
}

#[test]
fn train_validate_reports_yaml_mistakes_with_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, yaml) = project(tmp.path(), "lora:\n  rank: four\n");
    let o = run(&["train", "validate", s(&yaml)]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:7:", yaml.display())) && err.contains("rank"),
        "{err}"
    );

    let (_, _, yaml) = project(tmp.path(), "learning_rat: 0.1\n");
    let err = stderr(&run(&["train", "validate", s(&yaml)]));
    assert!(
        err.contains(":6:") && err.contains("unknown field `learning_rat`"),
        "{err}"
    );

    let missing = tmp.path().join("nope.yml");
    std::fs::write(
        &missing,
        "model: /no/such/model\ndata: /no/such/data.jsonl\n",
    )
    .unwrap();
    let o = run(&["train", "validate", s(&missing)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/no/such/model"), "{}", stderr(&o));
}

#[test]
fn profiles_set_defaults_that_yaml_and_flags_override() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, yaml) = project(tmp.path(), "profile: code\nlora:\n  alpha: 8\n");
    let o = run(&["train", "validate", s(&yaml), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // The profile's rank, the file's alpha and max_length.
    assert_eq!(plan["config"]["profile"], "code");
    assert_eq!(plan["config"]["lora"]["rank"], 32);
    assert_eq!(plan["config"]["lora"]["alpha"], 8.0);
    assert_eq!(plan["config"]["max_length"], 64);
    // A flag picks another profile.
    let o = run(&[
        "train",
        "validate",
        s(&yaml),
        "--profile",
        "instruct",
        "--json",
    ]);
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(plan["config"]["mask"], "last_turn");
    let o = run(&["train", "validate", s(&yaml), "--profile", "poetry"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown profile `poetry`"),
        "{}",
        stderr(&o)
    );
}

fn train_tiny(tmp: &Path, extra: &[&str]) -> PathBuf {
    let (model, data, _) = project(tmp, "");
    let runs = tmp.join("runs");
    let mut args = vec![
        "train",
        "start",
        s(&model),
        s(&data),
        "--iters",
        "6",
        "--batch-size",
        "2",
        "--max-length",
        "64",
        "--val-every",
        "2",
        "--report-every",
        "1",
        "--valid-fraction",
        "0.25",
        "--learning-rate",
        "0.01",
        "--runs-dir",
        s(&runs),
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    runs
}

/// The id (folder name) of the one run in `runs`.
fn only_run_id(runs: &std::path::Path) -> String {
    let entry = std::fs::read_dir(runs).unwrap().next().unwrap().unwrap();
    entry.file_name().to_str().unwrap().to_string()
}

#[test]
fn report_draws_png_and_svg_charts() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = train_tiny(tmp.path(), &[]);
    let id = &only_run_id(&runs);
    let o = run(&["report", id, "--runs-dir", s(&runs)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let png = runs.join(id).join("chart.png");
    let svg = runs.join(id).join("chart.svg");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // Width and height from the IHDR chunk.
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1200, 800));
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("validation loss") && svg.contains("learning rate")
    );

    let o = run(&["report", "no-such-run", "--runs-dir", s(&runs)]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn chat_streams_replies_from_piped_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let mut child = ft()
        .args(["chat", s(&model), "--max-tokens", "4", "--temperature", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\n/reset\nhello again\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // One reply line per message.
    assert_eq!(stdout(&o).lines().count(), 2, "{}", stdout(&o));

    let gpt2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/gpt2");
    // A model without a template chats in the format training would use.
    let mut child = ft()
        .args(["chat", s(&gpt2), "--max-tokens", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no chat template of its own; using chatml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_prints_its_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 12);
    let o = run(&[
        "bench",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--steps",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let figures: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    for key in [
        "matmul_gflops",
        "load_seconds",
        "generation_tokens_per_second",
        "train_trained_tokens_per_second",
    ] {
        assert!(figures[key].as_f64().unwrap() > 0.0, "{key}: {figures}");
    }
}

#[test]
fn batch_size_auto_picks_one_that_fits() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, yaml) = project(tmp.path(), "");
    let text = std::fs::read_to_string(&yaml)
        .unwrap()
        .replace("batch_size: 2", "batch_size: 0");
    std::fs::write(&yaml, text).unwrap();
    let o = run(&["train", "validate", s(&yaml), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    // On the CPU the choice stops at 4 (12 tiny examples fit easily).
    assert_eq!(plan["batch_size"], 4);
}

#[test]
fn ctrl_c_stops_cleanly_with_adapters_and_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, _) = project(tmp.path(), "");
    let runs = tmp.path().join("runs");
    let mut child = ft()
        .args([
            "train",
            "start",
            s(&model),
            s(&data),
            "--iters",
            "100000",
            "--batch-size",
            "2",
            "--max-length",
            "64",
            "--report-every",
            "1",
            "--val-every",
            "0",
            "--runs-dir",
            s(&runs),
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for a few steps, then press Ctrl-C.
    let mut steps = 0;
    for line in lines.by_ref() {
        if line.unwrap().contains("\"event\":\"step\"") {
            steps += 1;
            if steps == 3 {
                break;
            }
        }
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    assert!(
        rest.iter().any(|l| l.contains("\"event\":\"stopped\"")),
        "{rest:?}"
    );
    let run_dir = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(run_dir.join("adapters/adapters.safetensors").exists());
    let checkpoints: Vec<_> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .collect();
    assert!(!checkpoints.is_empty(), "no checkpoint written");
}

#[test]
fn runs_show_export_data_preview_and_completions() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = train_tiny(tmp.path(), &[]);
    let id = only_run_id(&runs);
    let o = run(&["runs", "show", &id, "--runs-dir", s(&runs)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&id), "{}", stdout(&o));
    for format in ["mlx", "peft", "fused", "gguf", "gguf-lora"] {
        let o = run(&["export", &id, "--format", format, "--runs-dir", s(&runs)]);
        assert!(o.status.success(), "{format}: {}", stderr(&o));
        let dir = PathBuf::from(stdout(&o).trim());
        assert!(dir.exists(), "{format}: {}", dir.display());
        if format.starts_with("gguf") {
            finetune::gguf::GgufFile::open(&dir).unwrap();
        }
        // A second export into the same folder is refused, never overwritten.
        let again = run(&["export", &id, "--format", format, "--runs-dir", s(&runs)]);
        assert_eq!(again.status.code(), Some(2), "{format}");
        assert!(stderr(&again).contains("already exists"));
    }
    let o = run(&[
        "export",
        "no-such-run",
        "--format",
        "mlx",
        "--runs-dir",
        s(&runs),
    ]);
    assert_eq!(o.status.code(), Some(2));

    let (model, data, _) = project(tmp.path(), "");
    let o = run(&[
        "data",
        "preview",
        s(&data),
        "--model",
        s(&model),
        "-n",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pieces: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(pieces.as_array().unwrap().len(), 2);
    let o = run(&["data", "preview", "/no/such.jsonl", "--model", s(&model)]);
    assert_eq!(o.status.code(), Some(2));

    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert!(
            o.status.success() && stdout(&o).contains("train"),
            "{shell}"
        );
    }
}

#[test]
fn the_shipped_configs_validate_as_the_seed_runs_them() {
    // `ft train validate configs/production.yml`: the file names no model or
    // data, so the bundled ones are used (and said so).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["quick", "production"] {
        let path = root.join(format!("configs/{name}.yml"));
        let o = run(&["train", "validate", s(&path), "--json"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(plan["notes"].as_array().unwrap().len(), 2, "{plan}");
        assert!(plan["train_examples"].as_u64().unwrap() > 1000);
    }
}
