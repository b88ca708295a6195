//! `ft train quick | start`.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use finetune::runs::{runs_dir, Run};
use finetune::train::{plan, resolve_config, resume, train, Observer, TrainConfig, TrainControl};

use crate::progress::{Fanout, JsonLines, TerminalProgress};

// Parsed once per process: the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train LoRA adapters with defaults picked for a first run.
    Quick(TrainArgs),
    /// Train with settings from flags and/or a YAML config.
    Start(TrainArgs),
    /// Check a YAML config: settings, model and data; print the plan with
    /// its memory and time estimates.
    Validate {
        /// The YAML file.
        config: PathBuf,
        /// Start from a profile (the file's own settings override it).
        #[arg(long)]
        profile: Option<String>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Continue an interrupted run from its newest checkpoint, exactly where it stopped.
    Resume {
        /// Run id (folder name) or path.
        run: String,
        #[arg(long)]
        runs_dir: Option<PathBuf>,
        /// Print events as JSON lines instead of a progress bar.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        spread: Spread,
    },
    /// One rank of a run trained by several processes (what `-n N` and
    /// `--hosts` start; its settings come on stdin, MLX_RANK says which
    /// rank it is).
    #[command(hide = true)]
    Rank {
        /// The run's folder (rank 0, which keeps the run).
        run: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct TrainArgs {
    /// A .gguf file, a Hugging Face model folder, or a hub id [default:
    /// the default model, SmolLM2-135M-Instruct]
    pub model: Option<PathBuf>,
    /// A data file (.jsonl, .json, .csv, .tsv, .parquet, .txt) or a folder
    /// with train.* (and valid.*) files [default: the sample chat dataset]
    pub data: Option<PathBuf>,
    /// YAML config; flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Start from a profile: chat, instruct, completion or code (the YAML
    /// and flags override it).
    #[arg(long)]
    pub profile: Option<String>,
    /// Optimizer steps (instead of epochs).
    #[arg(long, conflicts_with = "epochs")]
    pub iters: Option<usize>,
    /// Passes over the training data.
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Rows per batch, or `auto`: the largest that fits in memory.
    #[arg(long, value_parser = parse_batch_size)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub learning_rate: Option<f32>,
    /// adamw (default), adam, sgd (with --momentum) or adafactor.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(finetune::train::OptimizerKind::NAMES)
        .map(|s| finetune::train::OptimizerKind::parse(&s).expect("listed")))]
    pub optimizer: Option<finetune::train::OptimizerKind>,
    /// SGD's momentum (default 0.9; 0 for plain SGD).
    #[arg(long)]
    pub momentum: Option<f32>,
    /// Base weights in auto (float32 on the CPU, bfloat16 on a GPU),
    /// float32, bfloat16 or float16; adapters stay float32.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(finetune::train::config::Precision::NAMES)
        .map(|s| finetune::train::config::Precision::parse(&s).expect("listed")))]
    pub precision: Option<finetune::train::config::Precision>,
    /// Full fine-tuning of the last --lora-layers layers' projections
    /// instead of adapters.
    #[arg(long, conflicts_with = "dora")]
    pub full: bool,
    /// Longest example in tokens; longer ones are cut.
    #[arg(long)]
    pub max_length: Option<usize>,
    #[arg(long)]
    pub lora_rank: Option<i32>,
    /// Adapter scale is alpha / rank.
    #[arg(long)]
    pub lora_alpha: Option<f32>,
    /// Adapt only the last N layers.
    #[arg(long)]
    pub lora_layers: Option<usize>,
    /// Dropout on the adapters' input while training.
    #[arg(long)]
    pub lora_dropout: Option<f32>,
    /// DoRA: learn a magnitude per output feature as well.
    #[arg(long)]
    pub dora: bool,
    /// What to learn: sft (the answers; the default), from chosen /
    /// rejected pairs: dpo, ipo or orpo, or from prompts and rewards: grpo.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["sft", "dpo", "ipo", "orpo", "grpo"]).map(|s| s.parse::<finetune::train::Method>().expect("listed")))]
    pub method: Option<finetune::train::Method>,
    /// DPO / IPO: how far the model may move from the base (default 0.1);
    /// ORPO: the weight of the preference term (λ, default 0.1).
    #[arg(long)]
    pub beta: Option<f32>,
    /// DPO: the assumed chance that a pair's preference is wrong (default 0).
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// GRPO: a reward function: exact_match[=PATTERN] (vs the record's
    /// `answer`), regex=PATTERN or length=TOKENS, each optionally @WEIGHT;
    /// repeat for several (replaces the YAML's `rewards`).
    #[arg(long = "reward", value_name = "SPEC", value_parser = finetune::train::rewards::RewardSpec::parse_flag)]
    pub rewards: Vec<finetune::train::rewards::RewardSpec>,
    /// GRPO: completions sampled per prompt (default 4).
    #[arg(long)]
    pub group_size: Option<usize>,
    /// GRPO: the longest completion sampled, in tokens (default 128).
    #[arg(long)]
    pub max_completion_length: Option<usize>,
    /// GRPO: the sampling temperature (default 1).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// GRPO: the weight of the KL penalty toward the base (default 0.04).
    #[arg(long)]
    pub kl_coef: Option<f32>,
    /// QLoRA: quantize the base model's projections to 4 or 8 bits.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["4", "8"]).map(|s| s.parse::<i32>().expect("listed")))]
    pub qlora_bits: Option<i32>,
    /// Batches whose gradients are summed per optimizer step.
    #[arg(long)]
    pub grad_accumulation: Option<usize>,
    /// Pack several examples into each row of --max-length tokens.
    #[arg(long)]
    pub packing: bool,
    /// Gradient checkpointing: recompute the trained layers' activations in
    /// the backward pass (less memory, about a third more time).
    #[arg(long)]
    pub grad_checkpoint: bool,
    /// Compile the forward and backward pass (fuses element-wise work;
    /// ignored with LoRA dropout or --grad-checkpoint). Default: on a GPU.
    #[arg(long, conflicts_with = "no_compile")]
    pub compile: bool,
    /// Do not compile the step (the default on the CPU).
    #[arg(long)]
    pub no_compile: bool,
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Validate every N steps.
    #[arg(long)]
    pub val_every: Option<usize>,
    /// Stop when the validation loss has not improved for N evaluations.
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// Report progress every N steps.
    #[arg(long)]
    pub report_every: Option<usize>,
    /// Write a resumable checkpoint every N steps.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Learn the prompt tokens too (same as --mask all).
    #[arg(long)]
    pub train_on_prompt: bool,
    #[command(flatten)]
    pub data_args: crate::data::DataArgs,
    /// Hold out this fraction of the training records for validation when
    /// there is no validation file.
    #[arg(long)]
    pub valid_fraction: Option<f64>,
    /// Folder for runs (default: $FINETUNE_RUNS or the platform data folder).
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// Print events as JSON lines instead of a progress bar.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spread: Spread,
}

/// Data-parallel training over several processes or machines.
#[derive(Args, Clone, Default)]
pub struct Spread {
    /// Train in N processes on this machine, data parallel: each trains
    /// every Nth example of each batch and the gradients are summed (the
    /// same steps as one process, in parallel).
    #[arg(
        short = 'n',
        long = "ranks",
        value_name = "N",
        conflicts_with = "hosts"
    )]
    pub ranks: Option<usize>,
    /// Train over the machines of a hostfile (mlx.launch's JSON format, one
    /// rank per entry: `[{"ssh": "mac-b.local", "ips": ["192.168.1.11"]}]`),
    /// the first entry being this machine. Other hosts are reached over ssh
    /// (keys, no password) and need ft, the model and the data at the same
    /// paths.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// The distributed backend: ring (TCP, on the CPU; the default without
    /// a GPU) or nccl (one NVIDIA GPU per rank; the default on one). Named
    /// with -n 1, it still runs one rank in a group.
    #[arg(long, value_parser = ["ring", "nccl"])]
    pub backend: Option<String>,
}

impl Spread {
    /// The ranks' machines, when the run is spread over several processes.
    fn hosts(&self) -> anyhow::Result<Option<Vec<finetune::distributed::hosts::Host>>> {
        use finetune::distributed::hosts;
        if self.ranks == Some(0) {
            anyhow::bail!(finetune::Error::Invalid("-n: at least 1 rank".into()));
        }
        if let Some(path) = &self.hosts {
            return Ok(Some(hosts::read(path)?));
        }
        Ok(match self.ranks {
            Some(n) if n > 1 || self.backend.is_some() => Some(hosts::local(n)),
            _ if self.backend.is_some() => {
                anyhow::bail!(finetune::Error::Invalid(
                    "--backend: say over how many ranks (-n N) or which hosts (--hosts FILE)"
                        .into()
                ))
            }
            _ => None,
        })
    }
}

fn parse_batch_size(s: &str) -> Result<usize, String> {
    match s {
        "auto" => Ok(0),
        _ => s
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("`{s}`: expected a positive number or auto")),
    }
}

pub fn run(command: TrainCommand) -> anyhow::Result<()> {
    let (args, quick) = match command {
        TrainCommand::Quick(a) => (a, true),
        TrainCommand::Start(a) => (a, false),
        TrainCommand::Resume {
            run,
            runs_dir: dir,
            json,
            spread,
        } => {
            let hosts = spread.hosts()?;
            let run = Run::open(&dir.unwrap_or_else(runs_dir), &run)?;
            let config = run.resume_config()?;
            eprintln!("resuming run {} in {}", run.id, run.dir.display());
            if let Some(hosts) = hosts {
                let _lock = run.lock()?;
                return crate::launch::supervise(
                    &run,
                    &hosts,
                    spread.backend.as_deref(),
                    json,
                    true,
                );
            }
            return execute(&run, &config, json, true);
        }
        TrainCommand::Rank { run, json } => return rank(run.as_deref(), json),
        TrainCommand::Validate {
            config,
            profile,
            json,
        } => return validate(&config, profile.as_deref(), json),
    };
    let base = if quick {
        quick_defaults()
    } else {
        TrainConfig::default()
    };
    let mut config = resolve_config(base, args.profile.as_deref(), args.config.as_deref())?;
    config.model = args
        .model
        .clone()
        .unwrap_or_else(finetune::paths::default_model);
    config.data = args
        .data
        .clone()
        .unwrap_or_else(finetune::paths::sample_dataset);
    if let Some(v) = args.iters {
        config.iters = Some(v);
    }
    if let Some(v) = args.epochs {
        config.epochs = v;
        config.iters = None;
    }
    macro_rules! set {
        ($($flag:ident => $($field:ident).+),* $(,)?) => {
            $(if let Some(v) = args.$flag { config.$($field).+ = v; })*
        };
    }
    set!(lora_dropout => lora.dropout, grad_accumulation => grad_accumulation,
         batch_size => batch_size, learning_rate => learning_rate, max_length => max_length,
         lora_rank => lora.rank, lora_alpha => lora.alpha, warmup_steps => warmup_steps,
         val_every => steps_per_eval, seed => seed, report_every => steps_per_report,
         checkpoint_every => steps_per_checkpoint, optimizer => optimizer, momentum => momentum,
         precision => precision, method => method, beta => beta,
         label_smoothing => label_smoothing, group_size => group_size,
         max_completion_length => max_completion_length, temperature => temperature,
         kl_coef => kl_coef);
    if !args.rewards.is_empty() {
        config.rewards = args.rewards.clone();
    }
    if let Some(v) = args.early_stopping {
        config.early_stopping_patience = Some(v);
    }
    if let Some(v) = args.lora_layers {
        config.lora.num_layers = Some(v);
    }
    config.train_on_prompt |= args.train_on_prompt;
    config.lora.dora |= args.dora;
    config.lora.full |= args.full;
    config.packing |= args.packing;
    config.grad_checkpoint |= args.grad_checkpoint;
    if args.compile || args.no_compile {
        config.compile = Some(args.compile);
    }
    if let Some(bits) = args.qlora_bits {
        config.qlora_bits = Some(bits);
    }
    let d = &args.data_args;
    if let Some(t) = &d.template {
        config.template = Some(t.clone());
    }
    if let Some(m) = d.mask {
        config.mask = m;
    }
    if let Some(o) = d.on_bad_record {
        config.on_bad_record = o;
    }
    config.columns.extend(d.columns.iter().cloned());
    if let Some(f) = args.valid_fraction {
        config.valid_fraction = f;
    }

    let root = args.runs_dir.clone().unwrap_or_else(runs_dir);
    let hosts = args.spread.hosts()?;
    // A rank other than 0 of a group another launcher started (mlx.launch):
    // rank 0 keeps the run; this one trains its share and keeps nothing.
    if finetune::distributed::launched_as_rank() && std::env::var("MLX_RANK").as_deref() != Ok("0")
    {
        return train_quietly(&config, false, &TrainControl::default());
    }
    let run = Run::start(&root, &mut config)?;
    eprintln!("run {} in {}", run.id, run.dir.display());
    if let Some(hosts) = hosts {
        let _lock = run.lock()?;
        return crate::launch::supervise(
            &run,
            &hosts,
            args.spread.backend.as_deref(),
            args.json,
            false,
        );
    }
    execute(&run, &config, args.json, false)
}

/// One rank of a multi-process run: rank 0 records and renders the events
/// as a lone process does; the others train quietly (the trainer writes
/// nothing for them).
fn rank(dir: Option<&std::path::Path>, json: bool) -> anyhow::Result<()> {
    let control = TrainControl::default();
    let (spec, _ring) = crate::launch::read_spec(&control)?;
    if let Some(dir) = dir {
        let run = Run::open(dir, &dir.display().to_string())?;
        return execute_with(&run, &spec.config, json, spec.resume, control);
    }
    train_quietly(&spec.config, spec.resume, &control)
}

/// A rank other than 0: trains (or resumes) with no events to show or
/// record; Ctrl-C asks the group to stop after this step.
fn train_quietly(
    config: &TrainConfig,
    resuming: bool,
    control: &TrainControl,
) -> anyhow::Result<()> {
    let on_interrupt = control.clone();
    let _ = ctrlc::set_handler(move || on_interrupt.cancel());
    let mut quiet = |_: &finetune::train::TrainEvent| {};
    if resuming {
        resume(config, &mut quiet, control)?;
    } else {
        train(config, &mut quiet, control)?;
    }
    Ok(())
}

/// Trains (or resumes), recording events in the run and rendering them.
fn execute(run: &Run, config: &TrainConfig, json: bool, resuming: bool) -> anyhow::Result<()> {
    // Held until training ends: nothing else may resume this run meanwhile.
    let _lock = run.lock()?;
    execute_with(run, config, json, resuming, TrainControl::default())
}

/// `execute` without taking the run's lock (rank 0 of a run whose launcher
/// holds it), stopped through `control`.
fn execute_with(
    run: &Run,
    config: &TrainConfig,
    json: bool,
    resuming: bool,
    control: TrainControl,
) -> anyhow::Result<()> {
    // A hub model is downloaded here, with a progress bar, before training.
    crate::models::fetch_if_hub_id(&config.model)?;
    let mut recorder = run.recorder()?;
    let mut terminal = TerminalProgress::new();
    let mut json_lines = JsonLines;
    let renderer: &mut dyn Observer = if json { &mut json_lines } else { &mut terminal };
    let mut observer = Fanout(vec![&mut recorder, renderer]);
    // Ctrl-C stops after the current step, saving adapters and a checkpoint;
    // a second Ctrl-C quits at once.
    let on_interrupt = control.clone();
    let pressed = std::sync::atomic::AtomicBool::new(false);
    let _ = ctrlc::set_handler(move || {
        if pressed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step (Ctrl-C again to quit now)…");
        on_interrupt.cancel();
    });
    if resuming {
        resume(config, &mut observer, &control)?;
    } else {
        train(config, &mut observer, &control)?;
    }
    Ok(())
}

fn validate(path: &std::path::Path, profile: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut config = resolve_config(TrainConfig::default(), profile, Some(path))?;
    // A config meant for `ft train start MODEL DATA --config` names neither:
    // check it against the bundled model and sample data, and say so.
    let mut notes = Vec::new();
    if config.model.as_os_str().is_empty() {
        config.model = finetune::paths::default_model();
        notes.push("model: not set in the file; checked with the bundled model");
    }
    if config.data.as_os_str().is_empty() {
        config.data = finetune::paths::sample_dataset();
        notes.push("data: not set in the file; checked with the sample dataset");
    }
    crate::models::fetch_if_hub_id(&config.model)?;
    let plan = plan(&config)?;
    // Time: the step's arithmetic (~6 FLOPs per parameter per token) at the
    // matmul speed measured now, times the share of it training reached in
    // the measurements of BENCHMARKS.md (~40 %).
    let matmul = finetune::device::measure_matmul(
        512,
        mlx_rs::Dtype::Float32,
        std::time::Duration::from_millis(300),
    )?;
    let tokens_per_step = plan.trained_tokens_per_epoch as f64 / plan.steps_per_epoch.max(1) as f64;
    let seconds = plan.total_steps as f64 * tokens_per_step * 6.0 * plan.total_parameters as f64
        / (0.4 * matmul.gflops * 1e9);
    if json {
        let mut value = serde_json::to_value(&plan)?;
        value["estimated_seconds"] = serde_json::json!(seconds);
        value["config"] = serde_json::to_value(&config)?;
        value["notes"] = serde_json::json!(notes);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let gib = finetune::train::memory::gib;
    println!("{}: valid", path.display());
    for note in &notes {
        println!("note             {note}");
    }
    if let Some(p) = &config.profile {
        println!("profile          {p}");
    }
    println!("model            {}", config.model.display());
    println!(
        "data             {} training, {} validation examples ({} trained tokens per epoch)",
        plan.train_examples, plan.valid_examples, plan.trained_tokens_per_epoch
    );
    println!(
        "steps            {} ({} per epoch, batch {})",
        plan.total_steps, plan.steps_per_epoch, plan.batch_size
    );
    println!(
        "parameters       {} trainable of {} ({:.3} %)",
        plan.trainable_parameters,
        plan.total_parameters,
        100.0 * plan.trainable_parameters as f64 / plan.total_parameters.max(1) as f64
    );
    let m = &plan.memory_estimate;
    println!(
        "memory           ~{} at the peak (weights {}, adapters + optimizer {}, activations {}, logits {}); {} available",
        gib(m.total),
        gib(m.weights),
        gib(m.adapters),
        gib(m.activations),
        gib(m.logits),
        gib(plan.available_memory)
    );
    if !config.grad_checkpoint {
        let c = &plan.memory_estimate_checkpointed;
        println!(
            "                 ~{} with --grad-checkpoint (activations {})",
            gib(c.total),
            gib(c.activations)
        );
    }
    println!(
        "time             ~{:.0} min (rough: from the step's arithmetic at this machine's measured {:.0} GFLOP/s)",
        seconds / 60.0,
        matmul.gflops
    );
    for w in &plan.warnings {
        println!("warning          {w}");
    }
    if plan.available_memory > 0 && m.total - m.weights > plan.available_memory {
        return Err(finetune::Error::Invalid(format!(
            "{}: the run would need ~{} but {} is available",
            path.display(),
            gib(m.total),
            gib(plan.available_memory)
        ))
        .into());
    }
    Ok(())
}

/// `train quick`: a short first run sized to the machine: 30 steps of
/// examples up to 256 tokens, the largest batch that fits in memory (auto;
/// at most 4 on the CPU), 10 % held out for validation when there is no
/// validation file — minutes on a laptop CPU.
fn quick_defaults() -> TrainConfig {
    TrainConfig {
        iters: Some(30),
        batch_size: 0,
        max_length: 256,
        learning_rate: 2e-4,
        warmup_steps: 3,
        steps_per_eval: 10,
        steps_per_report: 1,
        val_batches: 5,
        valid_fraction: 0.1,
        ..TrainConfig::default()
    }
}
