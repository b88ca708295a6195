//! Every fuzz target runs a fixed number of inputs (seeds first, then
//! mutants) through its worker, so the harness cannot rot. `make fuzz`
//! runs them for real.

use std::process::Command;

#[test]
fn every_target_runs_its_seeds_and_some_mutants_in_a_worker() {
    let crashes = tempfile_dir();
    for target in [
        "gguf",
        "safetensors",
        "bin",
        "config-json",
        "tokenizer",
        "data",
        "yaml",
        "template",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ft-fuzz"))
            .args([target, "--seconds", "2", "--iterations", "300", "--crashes"])
            .arg(&crashes)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Exit 1 means findings (known ones in other crates' readers are
        // listed in BENCHMARKS.md); anything else is the harness failing.
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{target}: {stdout}{stderr}"
        );
        assert!(
            stdout.contains(&format!("ft-fuzz {target}: ")) && stdout.contains("executions"),
            "{target}: {stdout}{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&crashes);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ft-fuzz-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
