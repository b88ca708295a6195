//! `ft train start … -n N` or `--hosts hosts.json`: the launcher's
//! terminal side (Ctrl-C) over `finetune::distributed::launch`, and the
//! rank's side (`ft train rank`: its settings from the launcher's pipe).

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use finetune::distributed::hosts::Host;
use finetune::distributed::launch::{self, RankSpec, Settings};
use finetune::runs::Run;
use finetune::train::TrainControl;

/// Trains `run` with one rank per entry of `hosts` and waits for them; rank
/// 0's progress is this terminal's. The first Ctrl-C stops every rank after
/// the same step, the second at once.
pub fn supervise(
    run: &Run,
    hosts: &[Host],
    backend: Option<&str>,
    json: bool,
    resume: bool,
) -> anyhow::Result<()> {
    let control = TrainControl::default();
    let presses = Arc::new(AtomicUsize::new(0));
    {
        let control = control.clone();
        let _ = ctrlc::set_handler(move || {
            if presses.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!("\nstopping after this step (Ctrl-C again to quit now)…");
                control.cancel();
            } else {
                // The ranks leave when our pipes close.
                std::process::exit(130);
            }
        });
    }
    let settings = Settings {
        ft: std::env::current_exe()?,
        hosts,
        backend,
        resume,
        json,
    };
    launch::run(run, &settings, &control, None)?;
    Ok(())
}

/// A rank's side: reads its [`RankSpec`] from stdin, points MLX at the
/// ring's addresses, and goes on reading the pipe: `stop`, `pause` and
/// `resume` act on `control`; the pipe's end (the launcher gone) makes this
/// process leave at once. Returns the spec, and the folder holding the
/// ring's hostfile (kept while training).
pub fn read_spec(control: &TrainControl) -> anyhow::Result<(RankSpec, Option<tempfile::TempDir>)> {
    let mut stdin = BufReader::new(std::io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let spec: RankSpec = serde_json::from_str(&line).map_err(|e| {
        finetune::Error::Invalid(format!(
            "ft train rank reads its settings from its launcher (`ft train start -n N` or `--hosts`) on stdin: {e}"
        ))
    })?;
    let ring = match &spec.ring {
        Some(addresses) => {
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("ring.json");
            finetune::distributed::write_ring_hostfile(&path, addresses)?;
            // Before the trainer's thread joins the group (MLX reads it).
            std::env::set_var("MLX_HOSTFILE", &path);
            Some(dir)
        }
        None => None,
    };
    let control = control.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    eprintln!("the launcher is gone; this rank stops");
                    // At once: MLX's exit-time teardown could wait on a
                    // collective whose peers are gone.
                    unsafe { libc::_exit(1) };
                }
                Ok(_) => match line.trim() {
                    "stop" => control.cancel(),
                    "pause" => control.pause(),
                    "resume" => control.resume(),
                    _ => {}
                },
            }
        }
    });
    Ok((spec, ring))
}
