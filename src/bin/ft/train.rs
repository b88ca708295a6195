//! `ft train quick | start`.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use finetune::runs::{runs_dir, Run};
use finetune::train::{resume, train, Observer, TrainConfig, TrainControl};

use crate::progress::{Fanout, JsonLines, TerminalProgress};

// Parsed once per process: the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum TrainCommand {
    /// Train LoRA adapters with defaults picked for a first run.
    Quick(TrainArgs),
    /// Train with settings from flags and/or a YAML config.
    Start(TrainArgs),
    /// Continue an interrupted run from its newest checkpoint, exactly where it stopped.
    Resume {
        /// Run id (folder name) or path.
        run: String,
        #[arg(long)]
        runs_dir: Option<PathBuf>,
        /// Print events as JSON lines instead of a progress bar.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct TrainArgs {
    /// A .gguf file, a Hugging Face model folder, or a hub id.
    pub model: PathBuf,
    /// A data file (.jsonl, .json, .csv, .tsv, .parquet, .txt) or a folder
    /// with train.* (and valid.*) files.
    pub data: PathBuf,
    /// YAML config; flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Optimizer steps (instead of epochs).
    #[arg(long, conflicts_with = "epochs")]
    pub iters: Option<usize>,
    /// Passes over the training data.
    #[arg(long)]
    pub epochs: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub learning_rate: Option<f32>,
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
    /// QLoRA: quantize the base model's projections to 4 or 8 bits.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["4", "8"]).map(|s| s.parse::<i32>().expect("listed")))]
    pub qlora_bits: Option<i32>,
    /// Batches whose gradients are summed per optimizer step.
    #[arg(long)]
    pub grad_accumulation: Option<usize>,
    /// Pack several examples into each row of --max-length tokens.
    #[arg(long)]
    pub packing: bool,
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
}

pub fn run(command: TrainCommand) -> anyhow::Result<()> {
    let (args, quick) = match command {
        TrainCommand::Quick(a) => (a, true),
        TrainCommand::Start(a) => (a, false),
        TrainCommand::Resume {
            run,
            runs_dir: dir,
            json,
        } => {
            let run = Run::open(&dir.unwrap_or_else(runs_dir), &run)?;
            let config = run.read_config()?;
            eprintln!("resuming run {} in {}", run.id, run.dir.display());
            return execute(&run, &config, json, true);
        }
    };
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| finetune::Error::Io {
                path: path.clone(),
                source,
            })?;
            serde_yaml::from_str::<TrainConfig>(&text)
                .map_err(|e| finetune::Error::Invalid(format!("{}: {e}", path.display())))?
        }
        None if quick => quick_defaults(),
        None => TrainConfig::default(),
    };
    config.model = args.model.clone();
    config.data = args.data.clone();
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
         checkpoint_every => steps_per_checkpoint);
    if let Some(v) = args.early_stopping {
        config.early_stopping_patience = Some(v);
    }
    if let Some(v) = args.lora_layers {
        config.lora.num_layers = Some(v);
    }
    config.train_on_prompt |= args.train_on_prompt;
    config.lora.dora |= args.dora;
    config.packing |= args.packing;
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
    let run = Run::start(&root, &mut config)?;
    eprintln!("run {} in {}", run.id, run.dir.display());
    execute(&run, &config, args.json, false)
}

/// Trains (or resumes), recording events in the run and rendering them.
fn execute(run: &Run, config: &TrainConfig, json: bool, resuming: bool) -> anyhow::Result<()> {
    // A hub model is downloaded here, with a progress bar, before training.
    crate::models::fetch_if_hub_id(&config.model)?;
    let mut recorder = run.recorder()?;
    let mut terminal = TerminalProgress::new();
    let mut json_lines = JsonLines;
    let renderer: &mut dyn Observer = if json { &mut json_lines } else { &mut terminal };
    let mut observer = Fanout(vec![&mut recorder, renderer]);
    let control = TrainControl::default();
    if resuming {
        resume(config, &mut observer, &control)?;
    } else {
        train(config, &mut observer, &control)?;
    }
    Ok(())
}

/// `train quick`: a short, safe first run.
fn quick_defaults() -> TrainConfig {
    TrainConfig {
        iters: Some(100),
        learning_rate: 2e-4,
        warmup_steps: 10,
        steps_per_eval: 50,
        val_batches: 10,
        ..TrainConfig::default()
    }
}
