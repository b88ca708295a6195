//! `ft`: FineTune's command line.

mod bench;
mod bench_kernels;
mod chat;
mod data;
mod eval;
mod export;
mod launch;
mod models;
mod progress;
mod runs;
mod train;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use finetune::chat_template::Message;
use finetune::device::DeviceReport;
use finetune::generate::{generate, GenerateOptions};
use finetune::model::{self, LoadOptions};

#[derive(Parser)]
#[command(
    name = "ft",
    version,
    about = "Fine-tune language models on your own machine with MLX"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Show the machine, MLX's backends and a measured matmul speed.
    Device {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fine-tune a model on a dataset.
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// List, download, inspect, convert and quantize models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Write a model as a Hugging Face safetensors folder (same as `ft models convert`).
    Convert(models::ConvertArgs),
    /// Write a run's adapters for other tools (mlx-lm, PEFT), or fused into the base.
    Export(export::ExportArgs),
    /// Look at a dataset the way training will see it.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Measure a model (and its adapters) on a text: perplexity as llama.cpp measures it.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// List and inspect past training runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Talk to a model (and its adapters) in the terminal, replies streamed.
    Chat(chat::ChatArgs),
    /// Draw a run's training loss, validation loss and learning rate to PNG and SVG.
    Report {
        /// Run id or folder.
        run: String,
        /// Where to write (default: <run>/chart.png and <run>/chart.svg).
        #[arg(long)]
        output: Option<PathBuf>,
        #[arg(long)]
        runs_dir: Option<PathBuf>,
    },
    /// Measure this machine: matmul, loading, generation, LoRA training speed.
    Bench(bench::BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Continue a prompt with a model; prints only the completion.
    Generate {
        /// A .gguf file, a Hugging Face model folder, or a hub id.
        model: PathBuf,
        /// The text to continue (or, with --chat, the user's message).
        #[arg(long, short)]
        prompt: String,
        /// Wrap the prompt as one user message in the model's chat template.
        #[arg(long)]
        chat: bool,
        /// Most tokens to generate.
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// Sampling temperature; 0 always picks the most likely token.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Nucleus sampling: keep the most likely tokens up to this probability mass.
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Random seed for sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// LoRA adapters to apply: a folder with adapters.safetensors, or a run id.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Keep quantized weights (GGUF Q4/Q8) quantized. By default they are
        /// expanded to float32 when MLX runs on the CPU, where its dense
        /// kernels are faster than its quantized ones.
        #[arg(long)]
        keep_quantized: bool,
        /// Print load time and speeds to stderr when done.
        #[arg(long)]
        stats: bool,
    },
}

/// The arguments, with `--version` naming MLX's version as well (asked of
/// the library at run time, so it is the one actually loaded).
fn parse_cli() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mlx = finetune::device::mlx_version().unwrap_or_else(|_| "unknown".into());
    let version = format!("{} (MLX {mlx})", env!("CARGO_PKG_VERSION"));
    let version: &'static str = Box::leak(version.into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    finetune::error::install_panic_hook("ft", &[]);
    finetune::blas::shorten_idle_spin();
    let cli = parse_cli();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // 2: the input was wrong (bad file, record or setting); 1: anything else.
            let bad_input = matches!(
                e.downcast_ref::<finetune::Error>(),
                Some(finetune::Error::Invalid(_) | finetune::Error::Io { .. })
            );
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

/// Generates from `ids`, printing each new piece of text as it comes and a
/// newline at the end (`ft generate` and `ft chat`).
pub(crate) fn stream_to_stdout(
    model: &mut model::Model,
    tokenizer: &finetune::tokenizer::Tokenizer,
    ids: &[u32],
    options: &GenerateOptions,
) -> anyhow::Result<finetune::generate::Generation> {
    let mut stdout = std::io::stdout().lock();
    let result = generate(model, tokenizer, ids, options, |piece| {
        let _ = stdout.write_all(piece.as_bytes());
        let _ = stdout.flush();
    })?;
    writeln!(stdout)?;
    stdout.flush()?;
    Ok(result)
}

/// An adapter folder, a run folder, or a run id in the runs folder.
pub(crate) fn resolve_adapter(given: &std::path::Path) -> anyhow::Result<PathBuf> {
    for candidate in [
        given.to_path_buf(),
        given.join("adapters"),
        finetune::runs::runs_dir().join(given).join("adapters"),
    ] {
        if candidate.join("adapter_config.json").exists() {
            // mlx-lm or PEFT: load_adapters tells them apart.
            return Ok(candidate);
        }
    }
    Err(finetune::Error::Invalid(format!(
        "{}: no adapters here (expected adapter_config.json, a run folder or a run id)",
        given.display()
    ))
    .into())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(command) => train::run(command)?,
        Command::Runs(command) => runs::run(command)?,
        Command::Data(command) => data::run(command)?,
        Command::Eval(command) => eval::run(command)?,
        Command::Export(args) => export::run(args)?,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "ft", &mut std::io::stdout());
        }
        Command::Models(command) => models::run(command)?,
        Command::Chat(args) => chat::run(args)?,
        Command::Bench(args) => bench::run(args)?,
        Command::Report {
            run,
            output,
            runs_dir,
        } => {
            let run = finetune::runs::Run::open(
                &runs_dir.unwrap_or_else(finetune::runs::runs_dir),
                &run,
            )?;
            let events = finetune::report::read_events(&run.dir.join("events.jsonl"))?;
            let series = finetune::report::Series::from_events(&events);
            let stem = output.unwrap_or_else(|| run.dir.join("chart"));
            let (png, svg) =
                finetune::report::write_charts(&series, &format!("run {}", run.id), &stem)?;
            println!("{}\n{}", png.display(), svg.display());
        }
        Command::Convert(args) => models::convert(args)?,
        Command::Device { json } => {
            let report = DeviceReport::collect()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Generate {
            model,
            prompt,
            chat,
            max_tokens,
            temperature,
            top_p,
            seed,
            adapter,
            keep_quantized,
            stats,
        } => {
            let on_cpu = matches!(
                finetune::mlx_rs::Device::default().get_type()?,
                finetune::mlx_rs::DeviceType::Cpu
            );
            let dequantize = on_cpu && !keep_quantized;
            let start = std::time::Instant::now();
            let options = LoadOptions {
                dequantize,
                ..Default::default()
            };
            let mut loaded = model::load(&models::fetch_if_hub_id(&model)?, &options)?;
            if let Some(adapter) = adapter {
                let dir = resolve_adapter(&adapter)?;
                finetune::lora::load_adapters(&mut loaded.model, &dir)?;
                loaded.model.eval_parameters()?;
            }
            let load_seconds = start.elapsed().as_secs_f64();
            let text = if chat {
                let resolved = finetune::data::templates::resolve(
                    None,
                    loaded.chat_template.as_ref(),
                    &loaded.tokenizer,
                )?;
                for warning in &resolved.warnings {
                    eprintln!("note: {warning}");
                }
                let template = resolved.template;
                template.render(&[Message::new("user", &prompt)], true)?
            } else {
                prompt
            };
            // A plain prompt gets the BOS the model expects (the chat
            // template writes its own).
            let mut ids: Vec<u32> = Vec::new();
            if !chat {
                ids.extend(loaded.tokenizer.text_bos());
            }
            ids.extend(loaded.tokenizer.encode(&text)?);
            let options = GenerateOptions {
                max_tokens,
                temperature,
                top_p,
                seed,
            };
            let result = stream_to_stdout(&mut loaded.model, &loaded.tokenizer, &ids, &options)?;
            if stats {
                eprintln!(
                    "load {load_seconds:.2} s; prompt {} tokens in {:.2} s; generated {} tokens at {:.1} tokens/s",
                    result.prompt_tokens,
                    result.prompt_seconds,
                    result.generated_tokens,
                    result.tokens_per_second
                );
            }
        }
    }
    Ok(())
}
