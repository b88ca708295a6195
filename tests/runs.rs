//! Runs that cannot collide or be corrupted: folders made atomically, a
//! lock held by the process that trains a run, resume writing only inside
//! the folder it was given.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{write_chat_data, TinyModel};
use finetune::runs::{list, Run};
use finetune::train::{checkpoint, TrainEvent};

fn ft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ft"))
}

fn start(model: &Path, data: &Path, runs: &Path, iters: usize) -> Command {
    let mut cmd = ft();
    cmd.args(["train", "start"])
        .arg(model)
        .arg(data)
        .args(["--iters", &iters.to_string(), "--batch-size", "2"])
        .args(["--lora-rank", "4", "--checkpoint-every", "3"])
        .args(["--val-every", "0", "--json", "--runs-dir"])
        .arg(runs);
    cmd
}

fn resume(id_or_dir: &str, runs: &Path) -> Output {
    ft().args(["train", "resume", id_or_dir, "--json", "--runs-dir"])
        .arg(runs)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Starts a long run and waits for its first checkpoint.
fn running(model: &Path, data: &Path, runs: &Path) -> (Child, Run) {
    let mut child = start(model, data, runs, 100_000)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..2000 {
        if let Some(run) = list(runs).unwrap().into_iter().next() {
            if checkpoint::latest(&run.checkpoints_dir())
                .ok()
                .flatten()
                .is_some()
            {
                return (child, run);
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("no checkpoint after 20 s");
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let model = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 8);
    (tmp, model, data)
}

#[test]
fn two_runs_started_at_the_same_instant_get_two_folders() {
    let (tmp, model, data) = setup();
    let runs = tmp.path().join("runs");
    let children: Vec<Child> = (0..2)
        .map(|_| {
            start(&model, &data, &runs, 2)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let made = list(&runs).unwrap();
    assert_eq!(made.len(), 2, "{made:?}");
    for run in &made {
        let events = run.read_events().unwrap();
        let started = events
            .iter()
            .filter(|e| matches!(e, TrainEvent::Started { .. }))
            .count();
        assert_eq!(started, 1, "{}: one run per folder", run.id);
    }
}

#[test]
fn folders_made_in_the_same_second_in_one_process_are_distinct() {
    let tmp = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let root = tmp.path().to_path_buf();
            std::thread::spawn(move || Run::create(&root, "train").unwrap().dir)
        })
        .collect();
    let mut dirs: Vec<PathBuf> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    dirs.sort();
    dirs.dedup();
    assert_eq!(dirs.len(), 8);
}

#[test]
fn a_run_in_use_cannot_be_resumed_elsewhere_and_is_free_once_its_process_dies() {
    let (tmp, model, data) = setup();
    let runs = tmp.path().join("runs");
    let (mut child, run) = running(&model, &data, &runs);
    let holder = run.in_use().expect("the training process holds the run");
    assert!(holder.contains(&child.id().to_string()), "{holder}");

    let out = resume(&run.id, &runs);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("is in use by process") && err.contains(&child.id().to_string()),
        "{err}"
    );
    // The refused resume wrote nothing: one session in the events.
    let sessions = |run: &Run| {
        run.read_events()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, TrainEvent::Started { .. }))
            .count()
    };
    assert_eq!(sessions(&run), 1);

    // Killed, its lock goes with it (the operating system's lock, not a
    // file whose presence would outlive the process).
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(run.in_use(), None, "a dead process's lock is gone");
    assert!(run.lock().is_ok());
}

#[test]
fn a_copied_run_folder_resumes_into_itself() {
    let (tmp, model, data) = setup();
    let runs = tmp.path().join("runs");
    let (mut child, original) = running(&model, &data, &runs);
    child.kill().unwrap();
    child.wait().unwrap();

    // Copy the run elsewhere, with a config that still names the original's
    // absolute paths, and shorten it so that the resume finishes.
    let copies = tmp.path().join("copies");
    let copy = copies.join(&original.id);
    copy_dir(&original.dir, &copy);
    let config_path = copy.join("config.yaml");
    let yaml = std::fs::read_to_string(&config_path).unwrap();
    assert!(yaml.contains(&original.dir.display().to_string()));
    let shortened: String = yaml
        .lines()
        .map(|l| {
            if l.starts_with("iters:") {
                "iters: 12".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config_path, shortened).unwrap();
    let before = snapshot(&original.dir);

    let out = resume(&copy.display().to_string(), &copies);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(snapshot(&original.dir), before, "the original was touched");
    let copied = Run::open(&copies, &original.id).unwrap();
    assert!(copied
        .read_events()
        .unwrap()
        .iter()
        .any(|e| matches!(e, TrainEvent::Finished { .. })));
    assert!(copied.adapters_dir().join("adapters.safetensors").exists());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}
