//! The runs folder: one directory per training run, shared by the CLI and
//! the app — `config.yaml` (fully resolved), `events.jsonl` (every event as
//! it happened) and `adapters/`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::train::{Observer, TrainConfig, TrainEvent};

/// Where runs live: `$FINETUNE_RUNS`, else the platform's data folder
/// (`~/.local/share/finetune/runs` on Linux, `~/Library/Application
/// Support/finetune/runs` on macOS).
pub fn runs_dir() -> PathBuf {
    std::env::var_os("FINETUNE_RUNS")
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|d| d.join("finetune/runs")))
        .unwrap_or_else(|| PathBuf::from("runs"))
}

/// One run's folder.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub dir: PathBuf,
}

impl Run {
    /// Makes a new run folder named from the time and `label`.
    pub fn create(root: &Path, label: &str) -> Result<Self> {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        std::fs::create_dir_all(root).map_err(|source| Error::Io {
            path: root.into(),
            source,
        })?;
        // `create_dir` fails on an existing folder, so two runs started in
        // the same second (in one process or two) never share one.
        for n in 1.. {
            let id = if n == 1 {
                format!("{stamp}-{label}")
            } else {
                format!("{stamp}-{label}-{n}")
            };
            let dir = root.join(&id);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Self { id, dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(Error::Io { path: dir, source }),
            }
        }
        unreachable!("the suffixes never run out")
    }

    /// Makes the run folder for `config` (named after its dataset), points
    /// the config's adapters and checkpoints into it, and records the config.
    pub fn start(root: &Path, config: &mut TrainConfig) -> Result<Self> {
        let label = config
            .data
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        let run = Self::create(root, &label)?;
        config.output = run.adapters_dir();
        config.checkpoint_dir = Some(run.checkpoints_dir());
        run.write_config(config)?;
        Ok(run)
    }

    /// Opens an existing run by id or path.
    pub fn open(root: &Path, id_or_path: &str) -> Result<Self> {
        let direct = PathBuf::from(id_or_path);
        let dir = if direct.join("config.yaml").exists() {
            direct
        } else {
            root.join(id_or_path)
        };
        if !dir.join("config.yaml").exists() {
            return Err(Error::Invalid(format!(
                "no run `{id_or_path}` (looked in {})",
                root.display()
            )));
        }
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self { id, dir })
    }

    /// The run's config for resuming it: every path the run writes is
    /// derived from this folder, not taken from `config.yaml`, so a copied
    /// run folder resumes into itself.
    pub fn resume_config(&self) -> Result<TrainConfig> {
        let mut config = self.read_config()?;
        config.output = self.adapters_dir();
        config.checkpoint_dir = Some(self.checkpoints_dir());
        Ok(config)
    }

    /// Marks the run as in use by this process until the lock is dropped.
    /// Refused, naming the holder, while another process (or another job of
    /// this one) trains it. The lock is the operating system's, so one left
    /// by a killed process is gone with it.
    pub fn lock(&self) -> Result<RunLock> {
        let path = self.dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        // A few tries: `in_use` (the app's history) takes the lock shared
        // for an instant to look.
        let mut tries = 0;
        loop {
            match try_flock(&file, libc::LOCK_EX) {
                Ok(true) => break,
                Ok(false) if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Ok(false) => {
                    return Err(Error::Invalid(format!(
                        "run {} is in use by {}; wait for it to finish or stop it there",
                        self.id,
                        describe_holder(&path)
                    )))
                }
                Err(source) => return Err(Error::Io { path, source }),
            }
        }
        let holder = format!(
            "process {} ({}) since {}\n",
            std::process::id(),
            std::env::args()
                .next()
                .and_then(|a| Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "finetune".into()),
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
        );
        // What the lock says is only advice for the message above; the lock
        // itself is what counts.
        let _ = file
            .set_len(0)
            .and_then(|()| file.write_all(holder.as_bytes()));
        Ok(RunLock { _file: file })
    }

    /// Who holds the run's lock, when a process does.
    pub fn in_use(&self) -> Option<String> {
        let path = self.dir.join(LOCK_FILE);
        let file = File::open(&path).ok()?;
        match try_flock(&file, libc::LOCK_SH) {
            Ok(false) => Some(describe_holder(&path)),
            _ => None,
        }
    }

    pub fn adapters_dir(&self) -> PathBuf {
        self.dir.join("adapters")
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    pub fn events_path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    pub fn write_config(&self, config: &TrainConfig) -> Result<()> {
        let yaml = serde_yaml::to_string(config).expect("serializable");
        crate::files::write_atomic(&self.dir.join("config.yaml"), yaml.as_bytes())
    }

    pub fn read_config(&self) -> Result<TrainConfig> {
        let path = self.dir.join("config.yaml");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
    }

    /// Every event recorded so far (a torn last line from a crash is skipped).
    pub fn read_events(&self) -> Result<Vec<TrainEvent>> {
        let path = self.events_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(Error::Io { path, source }),
        };
        Ok(BufReader::new(file)
            .lines()
            .map_while(|l| l.ok())
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect())
    }

    /// An observer that appends each event to `events.jsonl`.
    pub fn recorder(&self) -> Result<EventRecorder> {
        let path = self.events_path();
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        // A process killed mid-write leaves a torn last line: end it, so
        // that the next event starts a line of its own and is not lost.
        if ends_mid_line(&mut file).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })? {
            file.write_all(b"\n")
                .map_err(|source| Error::Io { path, source })?;
        }
        Ok(EventRecorder { file })
    }
}

fn ends_mid_line(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// The file whose operating-system lock marks a run in use.
const LOCK_FILE: &str = "run.lock";

/// Held while a process trains a run; dropping it (or the process dying)
/// releases the run.
pub struct RunLock {
    _file: File,
}

/// `flock(2)` without waiting: whether the lock was taken. It belongs to
/// the open file, so it is released when the file is closed or the process
/// dies, however it dies. (std's `File::try_lock` does the same from Rust
/// 1.89, newer than this crate's minimum.)
fn try_flock(file: &File, kind: libc::c_int) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this `File` owns for the call's length.
    if unsafe { libc::flock(file.as_raw_fd(), kind | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

fn describe_holder(lock: &Path) -> String {
    std::fs::read_to_string(lock)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "another process".into())
}

/// Writes events as JSON lines, one write per event.
pub struct EventRecorder {
    file: File,
}

impl Observer for EventRecorder {
    fn on_event(&mut self, event: &TrainEvent) {
        let mut line = serde_json::to_string(event).expect("serializable");
        line.push('\n');
        // Losing the log must not stop training; the error shows on stderr.
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            eprintln!("warning: cannot record training event: {e}");
        }
    }
}

/// Past runs, newest first.
pub fn list(root: &Path) -> Result<Vec<Run>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: root.into(),
                source,
            })
        }
    };
    let mut runs: Vec<Run> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.yaml").exists())
        .map(|e| Run {
            id: e.file_name().to_string_lossy().into_owned(),
            dir: e.path(),
        })
        .collect();
    runs.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(runs)
}
