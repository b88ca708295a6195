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
        let mut id = format!("{stamp}-{label}");
        let mut n = 1;
        while root.join(&id).exists() {
            n += 1;
            id = format!("{stamp}-{label}-{n}");
        }
        let dir = root.join(&id);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { id, dir })
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
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| Error::Io { path, source })?;
        Ok(EventRecorder { file })
    }
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
