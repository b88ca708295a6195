//! `ft train start … -n N`: data-parallel training in N processes on this
//! machine over MLX's ring backend (TCP on loopback, on the CPU) or NCCL
//! (one GPU per rank). This process writes the ring's hostfile (or picks
//! NCCL's bootstrap port), starts the ranks (`ft train rank RUN`, each with
//! `MLX_RANK` and `MLX_HOSTFILE`, or `MLX_WORLD_SIZE`, `NCCL_HOST_IP`,
//! `NCCL_PORT` and its `CUDA_VISIBLE_DEVICES`), shows rank 0's progress (its stdout and stderr are
//! this terminal's), and supervises them: when one fails or is killed, the
//! others are stopped and the failure is reported with the rank, its host
//! and its last words.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finetune::runs::Run;

/// How long the other ranks get to finish after rank 0 has (their last
/// collective is already done; they only leave).
const GRACE: Duration = Duration::from_secs(10);

/// The lines of a rank's stderr kept for the report of its failure.
const TAIL_LINES: usize = 8;

struct Rank {
    number: usize,
    child: Child,
    /// The end of its stderr (ranks other than 0; rank 0 writes to ours).
    tail: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

/// The backend `-n` uses when none is named: NCCL where this build has it
/// and a GPU is the device, else the ring.
pub fn default_backend() -> &'static str {
    let gpu = matches!(
        mlx_rs::Device::default().get_type(),
        Ok(mlx_rs::DeviceType::Gpu)
    );
    if gpu && finetune::distributed::is_available("nccl") {
        "nccl"
    } else {
        "ring"
    }
}

/// Trains `run` in `ranks` local processes over `backend` (ring or nccl;
/// none: [`default_backend`]) and waits for them.
pub fn supervise(
    run: &Run,
    ranks: usize,
    backend: Option<&str>,
    json: bool,
    resume: bool,
) -> anyhow::Result<()> {
    let backend = backend.unwrap_or_else(|| default_backend());
    if !finetune::distributed::is_available(backend) {
        anyhow::bail!(finetune::Error::Invalid(format!(
            "this build of MLX has no {backend} backend (it has: {}), so it cannot train across processes over it",
            finetune::distributed::available_backends().join(", ")
        )));
    }
    let scratch = tempfile::tempdir()?;
    let hostfile = scratch.path().join("hosts.json");
    finetune::distributed::write_local_hostfile(&hostfile, ranks)?;
    let nccl_port = finetune::distributed::free_port()?;
    let exe = std::env::current_exe()?;
    // Ctrl-C reaches every rank (one process group): they agree to stop
    // after the same step. This process only waits for them.
    let _ = ctrlc::set_handler(|| {});
    eprintln!(
        "training on {ranks} rank(s) on this machine ({})",
        if backend == "nccl" {
            "NCCL, one GPU each"
        } else {
            "ring backend over loopback"
        }
    );
    let mut children: Vec<Rank> = Vec::with_capacity(ranks);
    for number in 0..ranks {
        let mut command = Command::new(&exe);
        command
            .args(["train", "rank"])
            .arg(&run.dir)
            .env("MLX_RANK", number.to_string())
            .env(finetune::distributed::BACKEND_ENV, backend);
        if backend == "nccl" {
            command
                .env("MLX_WORLD_SIZE", ranks.to_string())
                .env("NCCL_HOST_IP", "127.0.0.1")
                .env("NCCL_PORT", nccl_port.to_string())
                .env("CUDA_VISIBLE_DEVICES", number.to_string());
        } else {
            command.env("MLX_HOSTFILE", &hostfile);
        }
        if json {
            command.arg("--json");
        }
        if resume {
            command.arg("--resume");
        }
        if number > 0 {
            command.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                stop_all(&mut children);
                anyhow::bail!("could not start rank {number}: {e}");
            }
        };
        let tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = Arc::clone(&tail);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    let mut lines = sink.lock().unwrap_or_else(|p| p.into_inner());
                    lines.push(line);
                    if lines.len() > TAIL_LINES {
                        lines.remove(0);
                    }
                }
            });
        }
        children.push(Rank {
            number,
            child,
            tail,
            status: None,
        });
    }
    let mut root_done: Option<Instant> = None;
    loop {
        for rank in children.iter_mut().filter(|r| r.status.is_none()) {
            rank.status = rank.child.try_wait()?;
        }
        // The first to fail is the cause (the others then lose their
        // peer); within one look, a rank killed by a signal before one that
        // exited with an error.
        let failed = children
            .iter()
            .filter(|r| r.status.is_some_and(|s| !s.success()))
            .min_by_key(|r| (r.status.and_then(|s| s.code()).is_some(), r.number));
        if let Some(failed) = failed {
            let (number, status) = (failed.number, failed.status.expect("checked"));
            let tail = failed
                .tail
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            stop_all(&mut children);
            return Err(rank_failure(number, status, &tail));
        }
        if children.iter().all(|r| r.status.is_some()) {
            return Ok(());
        }
        if children[0].status.is_some() {
            let since = *root_done.get_or_insert_with(Instant::now);
            if since.elapsed() > GRACE {
                stop_all(&mut children);
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills every rank still running and reaps them.
fn stop_all(children: &mut [Rank]) {
    for rank in children.iter_mut().filter(|r| r.status.is_none()) {
        let _ = rank.child.kill();
        rank.status = rank.child.wait().ok();
    }
}

fn rank_failure(number: usize, status: ExitStatus, tail: &[String]) -> anyhow::Error {
    use std::os::unix::process::ExitStatusExt;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".to_string(),
    };
    // Rank 0's own messages are already on this terminal.
    let said = tail
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    let message = format!(
        "rank {number} on 127.0.0.1 (this machine) {how}{said}; the other ranks were stopped"
    );
    if status.code() == Some(2) {
        finetune::Error::Invalid(message).into()
    } else {
        anyhow::anyhow!(message)
    }
}
