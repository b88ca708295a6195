//! Starting and supervising the ranks of a run spread over several
//! processes (`ft train start -n N`, `--hosts hosts.json`, the app's
//! "spread over machines" setting).
//!
//! Every rank is `ft train rank`: on this machine started directly, on
//! other hosts over ssh (as mlx.launch does). Each reads on its stdin, in
//! one JSON line, a [`RankSpec`] (the run's settings, the ring's
//! addresses); its environment says which rank it is (`MLX_RANK`, and
//! NCCL's variables). Rank 0 runs here and keeps the run. The stdin pipes
//! stay open: `stop`, `pause` and `resume` lines act on every rank, and
//! their end (this process gone, or its ssh connection) makes a rank leave.
//! When one rank fails the others are stopped, and the failure is reported
//! with the rank, its host and its last words.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::hosts::{self, Host};
use crate::error::{Error, Result};
use crate::runs::Run;
use crate::train::{Observer, TrainConfig, TrainControl, TrainEvent};

/// How long the other ranks get to finish after rank 0 has (their last
/// collective is already done; they only leave).
const GRACE: Duration = Duration::from_secs(10);

/// The lines of a rank's stderr kept for the report of its failure.
const TAIL_LINES: usize = 8;

/// The program that reaches other hosts (tests name a stand-in).
pub const SSH_ENV: &str = "FINETUNE_SSH";

/// What a rank reads on its stdin before it starts.
#[derive(Serialize, Deserialize)]
pub struct RankSpec {
    /// The run's settings (its adapters and checkpoints are rank 0's).
    pub config: TrainConfig,
    /// The ring backend's hostfile: per rank, the `ip:port` it listens at.
    pub ring: Option<Vec<Vec<String>>>,
    pub resume: bool,
}

/// Where a rank stands, as the launcher sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    /// Started; joining the group, loading the model and data.
    Starting,
    /// The group formed and rank 0 began training.
    Training,
    Finished,
    Failed,
    /// Stopped by the launcher (another rank failed).
    Stopped,
}

/// One rank's machine and state (the app's per-host status).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    pub rank: usize,
    pub host: String,
    pub state: HostState,
    /// How it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How to start the ranks.
pub struct Settings<'a> {
    /// The `ft` command on this machine (remote hosts: their entry's `ft`,
    /// else the same path).
    pub ft: PathBuf,
    pub hosts: &'a [Host],
    /// ring or nccl; none: [`default_backend`].
    pub backend: Option<&'a str>,
    pub resume: bool,
    /// Rank 0 prints its events as JSON lines instead of progress bars.
    pub json: bool,
}

/// The backend used when none is named: NCCL where this build has it and
/// a GPU is the device, else the ring.
pub fn default_backend() -> &'static str {
    let gpu = matches!(
        mlx_rs::Device::default().get_type(),
        Ok(mlx_rs::DeviceType::Gpu)
    );
    if gpu && super::is_available("nccl") {
        "nccl"
    } else {
        "ring"
    }
}

struct Rank {
    host: Host,
    child: Child,
    /// The end of its stderr (ranks other than 0; rank 0 writes to ours).
    tail: Arc<Mutex<Vec<String>>>,
    exit: Option<ExitStatus>,
    state: HostState,
    /// How it failed.
    failure: Option<String>,
}

/// Trains `run` over `settings.hosts`, one rank each, and waits for them.
/// With an `observer`, rank 0's events (and the ranks' states, as
/// [`TrainEvent::Hosts`]) go to it; without one, rank 0 writes to this
/// process's stdout and stderr. `control` acts on every rank: cancelling
/// it stops them all after the same step, pausing it pauses them.
pub fn run(
    run: &Run,
    settings: &Settings,
    control: &TrainControl,
    observer: Option<&mut dyn Observer>,
) -> Result<()> {
    let hosts = settings.hosts;
    let backend = settings.backend.unwrap_or_else(|| default_backend());
    if !super::is_available(backend) {
        return Err(Error::Invalid(format!(
            "this build of MLX has no {backend} backend (it has: {}), so it cannot train across processes over it",
            super::available_backends().join(", ")
        )));
    }
    if hosts.is_empty() {
        return Err(Error::Invalid("no hosts to train on".into()));
    }
    let ranks = hosts.len();
    let ring = (backend == "ring")
        .then(|| hosts::ring_addresses(hosts, &super::free_ports(ranks)?))
        .transpose()?;
    let nccl = (backend == "nccl")
        .then(|| -> Result<_> { Ok((hosts[0].address()?, super::free_port()?)) })
        .transpose()?;
    let spec = serde_json::to_string(&RankSpec {
        config: run.resume_config()?,
        ring,
        resume: settings.resume,
    })
    .expect("settings serialise");
    let cwd = std::env::current_dir().map_err(|source| Error::Io {
        path: ".".into(),
        source,
    })?;
    let gpus = hosts::local_indices(hosts);
    let remote = hosts
        .iter()
        .skip(1)
        .filter(|h| !h.is_this_machine())
        .count();
    if observer.is_none() {
        eprintln!(
            "training on {ranks} rank(s){} ({})",
            if remote == 0 {
                " on this machine".to_string()
            } else {
                format!(", {remote} of them on other hosts over ssh")
            },
            match backend {
                "nccl" => "NCCL, one GPU each",
                _ if remote == 0 => "ring backend over loopback",
                _ => "ring backend over TCP",
            }
        );
    }

    let mut pipes: Vec<Option<ChildStdin>> = Vec::with_capacity(ranks);
    let mut children: Vec<Rank> = Vec::with_capacity(ranks);
    let (events_tx, events) = mpsc::channel::<TrainEvent>();
    for (number, host) in hosts.iter().enumerate() {
        let mut env = vec![
            ("MLX_RANK", number.to_string()),
            (super::BACKEND_ENV, backend.to_string()),
        ];
        if let Some((ip, port)) = &nccl {
            env.push(("MLX_WORLD_SIZE", ranks.to_string()));
            env.push(("NCCL_HOST_IP", ip.clone()));
            env.push(("NCCL_PORT", port.to_string()));
            env.push(("CUDA_VISIBLE_DEVICES", gpus[number].to_string()));
        }
        let mut args: Vec<String> = vec!["train".into(), "rank".into()];
        if number == 0 {
            args.push(run.dir.display().to_string());
        }
        if settings.json || (number == 0 && observer.is_some()) {
            args.push("--json".into());
        }
        // Rank 0 runs here whatever its entry's name: it keeps the run.
        let mut command = if number == 0 || host.is_this_machine() {
            let mut c = Command::new(&settings.ft);
            c.args(&args).envs(env.iter().map(|(k, v)| (*k, v)));
            c
        } else {
            over_ssh(host, &settings.ft, &cwd, &env, &args)
        };
        // Process groups of their own: a Ctrl-C at the terminal reaches
        // only the launcher, which asks every rank to stop together.
        command.stdin(Stdio::piped()).process_group(0);
        if number > 0 {
            command.stdout(Stdio::null()).stderr(Stdio::piped());
        } else if observer.is_some() {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                stop_all(&mut children);
                return Err(Error::Invalid(format!(
                    "could not start rank {number} on {}: {e}",
                    host.label()
                )));
            }
        };
        let mut stdin = child.stdin.take();
        if let Some(pipe) = stdin.as_mut() {
            // A rank that died at once is reported below, with its words.
            let _ = writeln!(pipe, "{spec}").and_then(|_| pipe.flush());
        }
        pipes.push(stdin);
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
        if let Some(stdout) = child.stdout.take() {
            let tx = events_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                    if let Ok(event) = serde_json::from_str::<TrainEvent>(&line) {
                        if tx.send(event).is_err() {
                            break;
                        }
                    }
                }
            });
        }
        children.push(Rank {
            host: host.clone(),
            child,
            tail,
            exit: None,
            state: HostState::Starting,
            failure: None,
        });
    }
    drop(events_tx);
    let mut supervisor = Supervisor {
        children,
        pipes,
        observer,
        events,
        root_failed: false,
    };
    let outcome = supervisor.wait(control);
    // Closing the pipes tells any rank still there to leave.
    supervisor.pipes.clear();
    outcome
}

struct Supervisor<'a> {
    children: Vec<Rank>,
    pipes: Vec<Option<ChildStdin>>,
    observer: Option<&'a mut dyn Observer>,
    events: mpsc::Receiver<TrainEvent>,
    /// Rank 0 reported its own failure (the launcher adds none).
    root_failed: bool,
}

impl Supervisor<'_> {
    /// Waits for the ranks; the first failure stops the others.
    fn wait(&mut self, control: &TrainControl) -> Result<()> {
        let mut root_done: Option<Instant> = None;
        let mut told = (false, false); // (stop, paused) as last sent
        self.report_hosts();
        loop {
            // The control's state, mirrored to every rank.
            if control.is_cancelled() && !told.0 {
                self.send("stop");
                told.0 = true;
            } else if !told.0 && control.is_paused() != told.1 {
                told.1 = control.is_paused();
                self.send(if told.1 { "pause" } else { "resume" });
            }
            self.forward_events();
            let mut changed = false;
            for rank in self.children.iter_mut().filter(|r| r.exit.is_none()) {
                rank.exit = rank.child.try_wait().map_err(|source| Error::Io {
                    path: "rank".into(),
                    source,
                })?;
                if let Some(exit) = rank.exit {
                    rank.state = if exit.success() {
                        HostState::Finished
                    } else {
                        HostState::Failed
                    };
                    changed = true;
                }
            }
            if changed {
                self.report_hosts();
            }
            if let Some(failure) = self.first_failure() {
                // Rank 0's last events and the failed rank's last words may
                // still be on their way.
                std::thread::sleep(Duration::from_millis(200));
                self.forward_events();
                let (number, message) = failure;
                let rank = &mut self.children[number];
                let said = last_words(&rank.tail);
                let message = format!("{message}{said}");
                rank.failure = Some(message.clone());
                self.stop_all();
                self.report_hosts();
                let message = format!("{message}; the other ranks were stopped");
                if let Some(observer) = self.observer.as_deref_mut() {
                    if !self.root_failed {
                        observer.on_event(&TrainEvent::Failed {
                            error: message.clone(),
                        });
                    }
                }
                let bad_input = self.children[number].exit.and_then(|s| s.code()) == Some(2);
                return Err(if bad_input {
                    Error::Invalid(message)
                } else {
                    Error::Rank(message)
                });
            }
            if self.children.iter().all(|r| r.exit.is_some()) {
                self.forward_events();
                return Ok(());
            }
            if self.children[0].exit.is_some() {
                let since = *root_done.get_or_insert_with(Instant::now);
                if since.elapsed() > GRACE {
                    self.stop_all();
                    self.report_hosts();
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The rank whose failure is the cause, with what happened to it: the
    /// others then lose their peer, so within one look a rank killed by a
    /// signal, then one that refused its input (code 2), before one that
    /// lost its peers.
    fn first_failure(&self) -> Option<(usize, String)> {
        let (number, rank) = self
            .children
            .iter()
            .enumerate()
            .filter(|(_, r)| r.exit.is_some_and(|s| !s.success()))
            .min_by_key(|(n, r)| {
                let cause = match r.exit.and_then(|s| s.code()) {
                    None => 0,
                    Some(2) => 1,
                    Some(_) => 2,
                };
                (cause, *n)
            })?;
        use std::os::unix::process::ExitStatusExt;
        let exit = rank.exit.expect("filtered");
        let how = match (exit.code(), exit.signal()) {
            // ssh's own failures (no such host, refused, no key) end with 255.
            (Some(255), _) if number > 0 && !rank.host.is_this_machine() => {
                "could not be reached over ssh".to_string()
            }
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            _ => "ended".to_string(),
        };
        Some((
            number,
            format!("rank {number} on {} {how}", rank.host.label()),
        ))
    }

    /// Rank 0's events, to the observer; the first `started` means every
    /// rank joined the group.
    fn forward_events(&mut self) {
        let Some(observer) = self.observer.as_deref_mut() else {
            return;
        };
        let mut started = false;
        while let Ok(event) = self.events.try_recv() {
            match &event {
                TrainEvent::Started { .. } => started = true,
                TrainEvent::Failed { .. } => self.root_failed = true,
                _ => {}
            }
            observer.on_event(&event);
        }
        if started {
            for rank in self
                .children
                .iter_mut()
                .filter(|r| r.state == HostState::Starting)
            {
                rank.state = HostState::Training;
            }
            self.report_hosts();
        }
    }

    fn report_hosts(&mut self) {
        if let Some(observer) = self.observer.as_deref_mut() {
            let hosts = self
                .children
                .iter()
                .enumerate()
                .map(|(rank, r)| HostStatus {
                    rank,
                    host: r.host.label(),
                    state: r.state,
                    message: r.failure.clone(),
                })
                .collect();
            observer.on_event(&TrainEvent::Hosts { hosts });
        }
    }

    fn send(&mut self, line: &str) {
        for pipe in self.pipes.iter_mut().flatten() {
            let _ = writeln!(pipe, "{line}").and_then(|_| pipe.flush());
        }
    }

    fn stop_all(&mut self) {
        stop_all(&mut self.children);
    }
}

/// The last line a rank wrote to stderr, as `: …`.
fn last_words(tail: &Mutex<Vec<String>>) -> String {
    tail.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default()
}

/// Kills every rank still running and reaps them.
fn stop_all(children: &mut [Rank]) {
    for rank in children.iter_mut().filter(|r| r.exit.is_none()) {
        let _ = rank.child.kill();
        rank.exit = rank.child.wait().ok();
        rank.state = HostState::Stopped;
    }
}

/// `ft train rank` on `host` over ssh, in the folder this process runs in
/// (relative paths of the run's settings mean the same there).
fn over_ssh(
    host: &Host,
    ft: &Path,
    cwd: &Path,
    env: &[(&str, String)],
    args: &[String],
) -> Command {
    let ft = host.ft.clone().unwrap_or_else(|| ft.display().to_string());
    let mut line = format!(
        "cd {} 2>/dev/null; exec env",
        quote(&cwd.display().to_string())
    );
    for (k, v) in env {
        line.push_str(&format!(" {k}={}", quote(v)));
    }
    for word in std::iter::once(&ft).chain(args) {
        line.push(' ');
        line.push_str(&quote(word));
    }
    let ssh = std::env::var_os(SSH_ENV).unwrap_or_else(|| "ssh".into());
    let mut c = Command::new(ssh);
    // No terminal (the rank's stdin is our pipe), no password prompts.
    c.args(["-T", "-o", "BatchMode=yes", "--", &host.ssh, &line]);
    c
}

/// `s` as one word of a POSIX shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
