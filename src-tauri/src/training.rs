//! Training from the window: starts the engine's trainer on its own thread
//! and streams its events to the UI over a Tauri channel (ordered, typed);
//! pause / resume / stop act on the running job.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use finetune::distributed::hosts::Host;
use finetune::distributed::launch::{self, Settings};
use finetune::runs::{runs_dir, Run};
use finetune::train::{train, Observer, TrainConfig, TrainControl, TrainEvent};
use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;
use tauri::State;

use crate::error::CommandError;

/// What the Train panel sends. Empty paths mean the bundled defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct StartRequest {
    pub model: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub iters: usize,
    pub batch_size: usize,
    pub learning_rate: f32,
    pub lora_rank: i32,
    pub lora_alpha: f32,
    pub max_length: usize,
    pub steps_per_eval: usize,
    /// Settings the simple form leaves at their defaults.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub mask: Option<finetune::data::MaskPolicy>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub grad_accumulation: Option<usize>,
    #[serde(default)]
    pub packing: bool,
    #[serde(default)]
    pub dora: bool,
    #[serde(default)]
    pub qlora_bits: Option<i32>,
    #[serde(default)]
    pub early_stopping: Option<usize>,
    #[serde(default)]
    pub valid_fraction: Option<f64>,
    #[serde(default)]
    pub skip_bad_records: bool,
    /// adamw (default), adam, sgd or adafactor.
    #[serde(default)]
    pub optimizer: Option<finetune::train::OptimizerKind>,
    /// auto (default), float32, bfloat16 or float16 base weights.
    #[serde(default)]
    pub precision: Option<finetune::train::config::Precision>,
    /// Full fine-tuning of the projections instead of adapters.
    #[serde(default)]
    pub full: bool,
    /// Recompute activations in the backward pass (less memory).
    #[serde(default)]
    pub grad_checkpoint: bool,
    /// sft (default), or dpo / ipo / orpo over preference pairs.
    #[serde(default)]
    pub method: Option<finetune::train::Method>,
    /// DPO / IPO β, ORPO λ (default 0.1).
    #[serde(default)]
    pub beta: Option<f32>,
    /// GRPO: completions sampled per prompt (default 4).
    #[serde(default)]
    pub group_size: Option<usize>,
    /// GRPO: the longest completion in tokens (default 128).
    #[serde(default)]
    pub max_completion_length: Option<usize>,
    /// GRPO: the sampling temperature (default 1).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// GRPO: the weight of the KL penalty (default 0.04).
    #[serde(default)]
    pub kl_coef: Option<f32>,
    /// GRPO: the reward functions, as in the YAML (`{"exact_match": {…}}`).
    #[serde(default)]
    pub rewards: Option<Vec<finetune::train::rewards::RewardSpec>>,
    /// Spread the run over the machines of this hostfile (mlx.launch's
    /// format, one rank per entry, the first being this machine).
    #[serde(default)]
    pub hosts: Option<PathBuf>,
}

/// The job the window controls (one at a time).
#[derive(Default)]
pub struct TrainingState {
    job: JobSlots,
}

/// The run in progress: its control and its id (for the history). Shared
/// with the training thread, which empties it when the run ends.
#[derive(Default, Clone)]
struct JobSlots {
    control: Arc<Mutex<Option<TrainControl>>>,
    id: Arc<Mutex<Option<String>>>,
}

impl JobSlots {
    /// Empties both slots (a lock poisoned by a panic elsewhere is still
    /// emptied: the slots hold no invariant a panic could break).
    fn clear(&self) {
        *self.control.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.id.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl TrainingState {
    /// The run in progress, if any.
    pub fn running(&self) -> Option<String> {
        self.job
            .id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Forwards events to the window and records them in the run folder.
struct ChannelObserver {
    channel: Channel<TrainEvent>,
    recorder: Option<finetune::runs::EventRecorder>,
    /// The job's slots, emptied as soon as the run ends, before the window
    /// hears of it: the runs list it then asks for no longer says
    /// `running`, and a new run may start at once.
    job: JobSlots,
    /// The run's lock, released at the run's last event for the same
    /// reason (the trainer writes nothing after it).
    lock: Option<finetune::runs::RunLock>,
    /// The run's last event was sent.
    ended: bool,
}

impl Observer for ChannelObserver {
    fn on_event(&mut self, event: &TrainEvent) {
        if let Some(r) = &mut self.recorder {
            r.on_event(event);
        }
        if matches!(
            event,
            TrainEvent::Finished { .. } | TrainEvent::Stopped { .. } | TrainEvent::Failed { .. }
        ) {
            self.lock = None;
            self.job.clear();
            self.ended = true;
        }
        let _ = self.channel.send(event.clone());
    }
}

impl StartRequest {
    fn to_config(&self) -> Result<TrainConfig, CommandError> {
        let base =
            finetune::train::resolve_config(TrainConfig::default(), self.profile.as_deref(), None)?;
        let mut config = TrainConfig {
            model: self
                .model
                .clone()
                .unwrap_or_else(finetune::paths::default_model),
            data: self
                .data
                .clone()
                .unwrap_or_else(finetune::paths::sample_dataset),
            iters: Some(self.iters),
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            max_length: self.max_length,
            steps_per_eval: self.steps_per_eval,
            steps_per_report: 1,
            warmup_steps: (self.iters / 10).min(50),
            template: self.template.clone(),
            mask: self.mask.unwrap_or(base.mask),
            grad_accumulation: self.grad_accumulation.unwrap_or(1).max(1),
            packing: self.packing,
            grad_checkpoint: self.grad_checkpoint,
            qlora_bits: self.qlora_bits,
            early_stopping_patience: self.early_stopping,
            valid_fraction: self.valid_fraction.unwrap_or(0.0),
            on_bad_record: if self.skip_bad_records {
                finetune::data::OnBadRecord::Skip
            } else {
                finetune::data::OnBadRecord::Error
            },
            profile: self.profile.clone(),
            ..base
        };
        config.lora.rank = self.lora_rank;
        config.lora.alpha = self.lora_alpha;
        config.lora.dora = self.dora;
        config.lora.full = self.full;
        if let Some(optimizer) = self.optimizer {
            config.optimizer = optimizer;
        }
        if let Some(precision) = self.precision {
            config.precision = precision;
        }
        if let Some(method) = self.method {
            config.method = method;
        }
        if let Some(beta) = self.beta {
            config.beta = beta;
        }
        if let Some(group_size) = self.group_size {
            config.group_size = group_size;
        }
        if let Some(length) = self.max_completion_length {
            config.max_completion_length = length;
        }
        if let Some(temperature) = self.temperature {
            config.temperature = temperature;
        }
        if let Some(kl_coef) = self.kl_coef {
            config.kl_coef = kl_coef;
        }
        if let Some(rewards) = &self.rewards {
            config.rewards = rewards.clone();
        }
        Ok(config)
    }
}

/// Starts a run; returns its id. Events arrive on `on_event`.
#[tauri::command]
pub fn start_training(
    request: StartRequest,
    on_event: Channel<TrainEvent>,
    state: State<'_, TrainingState>,
) -> Result<String, CommandError> {
    let mut current = idle_job(&state)?;
    let mut config = request.to_config()?;
    let spread = request.hosts.as_deref().map(read_hosts).transpose()?;
    let run = Run::start(&runs_dir(), &mut config)?;
    let job = Job {
        run,
        config,
        resuming: false,
        spread,
    };
    spawn(&mut current, &state, job, on_event)
}

/// The machines of a hostfile, checked (the Train panel lists them before
/// a spread run starts).
#[tauri::command]
pub fn read_hostfile(path: PathBuf) -> Result<Vec<HostEntry>, CommandError> {
    Ok(read_hosts(&path)?
        .iter()
        .enumerate()
        .map(|(rank, h)| HostEntry {
            rank,
            host: h.label(),
            // Rank 0 runs in this app whatever its entry says.
            this_machine: rank == 0 || h.is_this_machine(),
        })
        .collect())
}

/// One rank's machine, as the Train panel lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostEntry {
    pub rank: usize,
    pub host: String,
    pub this_machine: bool,
}

fn read_hosts(path: &std::path::Path) -> Result<Vec<Host>, CommandError> {
    Ok(finetune::distributed::hosts::read(path)?)
}

/// The `ft` command that runs the ranks of a spread run: $FINETUNE_FT, else
/// the one installed beside the app.
fn ft_command() -> Result<PathBuf, CommandError> {
    if let Some(path) = std::env::var_os("FINETUNE_FT") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe().map_err(|e| CommandError::Background(e.to_string()))?;
    let beside = exe.with_file_name("ft");
    if beside.is_file() {
        return Ok(beside);
    }
    Err(CommandError::from(finetune::Error::Invalid(format!(
        "a spread run needs the ft command, which runs its ranks, beside the app ({} is missing)",
        beside.display()
    ))))
}

/// What the settings amount to before starting: examples, steps, and the
/// memory estimate against what is available (the Train panel shows it
/// live and warns before it is exceeded).
#[tauri::command]
pub async fn plan_training(request: StartRequest) -> Result<finetune::train::Plan, CommandError> {
    let config = request.to_config()?;
    tauri::async_runtime::spawn_blocking(move || finetune::train::plan(&config))
        .await
        .map_err(|e| CommandError::Background(e.to_string()))?
        .map_err(CommandError::from)
}

/// Continues an interrupted run from its newest checkpoint.
#[tauri::command]
pub fn resume_run(
    id: String,
    on_event: Channel<TrainEvent>,
    state: State<'_, TrainingState>,
) -> Result<String, CommandError> {
    let mut current = idle_job(&state)?;
    let run = Run::open(&runs_dir(), &id)?;
    let config = run.resume_config()?;
    let job = Job {
        run,
        config,
        resuming: true,
        spread: None,
    };
    spawn(&mut current, &state, job, on_event)
}

/// What the training thread runs.
struct Job {
    run: Run,
    config: TrainConfig,
    resuming: bool,
    /// The machines of a spread run (rank 0 here, its events ours).
    spread: Option<Vec<Host>>,
}

impl Job {
    fn run(&self, observer: &mut ChannelObserver, control: &TrainControl) {
        let Some(hosts) = &self.spread else {
            let _ = if self.resuming {
                finetune::train::resume(&self.config, observer, control)
            } else {
                train(&self.config, observer, control)
            };
            return;
        };
        let settings = match ft_command() {
            Ok(ft) => Settings {
                ft,
                hosts,
                backend: None,
                resume: self.resuming,
                json: true,
            },
            Err(e) => {
                observer.on_event(&TrainEvent::Failed {
                    error: e.to_string(),
                });
                return;
            }
        };
        // A rank's failure arrives as a `failed` event; an error before
        // any rank started does not.
        if let Err(e) = launch::run(&self.run, &settings, control, Some(observer)) {
            if !observer.ended {
                observer.on_event(&TrainEvent::Failed {
                    error: e.to_string(),
                });
            }
        }
    }
}

/// The job's control slot, locked, when no run is in progress.
fn idle_job<'a>(
    state: &'a State<'_, TrainingState>,
) -> Result<std::sync::MutexGuard<'a, Option<TrainControl>>, CommandError> {
    let current = state.job.control.lock().unwrap_or_else(|p| p.into_inner());
    if current.is_some() {
        return Err(CommandError::Busy(
            "a training run is already in progress".into(),
        ));
    }
    Ok(current)
}

/// Runs the job on its own thread; `current` holds its control meanwhile.
fn spawn(
    current: &mut Option<TrainControl>,
    state: &State<'_, TrainingState>,
    job_to_run: Job,
    on_event: Channel<TrainEvent>,
) -> Result<String, CommandError> {
    let run = &job_to_run.run;
    // Taken here, so that a run in use elsewhere (`ft train` in a terminal)
    // is refused before anything starts.
    let lock = run.lock()?;
    let control = TrainControl::default();
    *current = Some(control.clone());
    // A spread run's rank 0 records its own events.
    let recorder = if job_to_run.spread.is_some() {
        None
    } else {
        run.recorder().ok()
    };
    let id = run.id.clone();
    let job = state.job.clone();
    *job.id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
    let spawned = std::thread::Builder::new()
        .name("training".into())
        .spawn(move || {
            // Restored when training ends: chat and export after it run at
            // the normal priority.
            let _lowered = crate::priority::lower_training_threads(crate::priority::TRAINING_NICE);
            let mut observer = ChannelObserver {
                channel: on_event,
                recorder,
                job: job.clone(),
                lock: Some(lock),
                ended: false,
            };
            // Errors reach the window as a `failed` event; so does a panic,
            // which would otherwise leave the job slot full and refuse
            // every later Start.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job_to_run.run(&mut observer, &control)
            }));
            if let Err(panic) = outcome {
                let failed = TrainEvent::Failed {
                    error: format!(
                        "training stopped on an internal error ({}); please report it",
                        panic_message(panic.as_ref())
                    ),
                };
                // The observer itself may be what panicked.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    observer.on_event(&failed)
                }));
            }
            // Every end sends a last event that empties the slots; this
            // covers an end that somehow did not.
            job.clear();
        });
    if let Err(e) = spawned {
        *current = None;
        *state.job.id.lock().unwrap_or_else(|p| p.into_inner()) = None;
        return Err(CommandError::Background(e.to_string()));
    }
    Ok(id)
}

/// The text a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn with_job(
    state: &State<'_, TrainingState>,
    act: impl FnOnce(&TrainControl),
) -> Result<(), CommandError> {
    match state
        .job
        .control
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        Some(control) => {
            act(control);
            Ok(())
        }
        None => Err(CommandError::Busy("no training run in progress".into())),
    }
}

#[tauri::command]
pub fn pause_training(state: State<'_, TrainingState>) -> Result<(), CommandError> {
    with_job(&state, TrainControl::pause)
}

#[tauri::command]
pub fn resume_training(state: State<'_, TrainingState>) -> Result<(), CommandError> {
    with_job(&state, TrainControl::resume)
}

#[tauri::command]
pub fn stop_training(state: State<'_, TrainingState>) -> Result<(), CommandError> {
    with_job(&state, TrainControl::cancel)
}
