//! `ft export`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use finetune::export::{export_run, ExportFormat};
use finetune::runs::{runs_dir, Run};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// mlx-lm: adapters.safetensors + adapter_config.json (`mlx_lm.generate --adapter-path`).
    Mlx,
    /// Hugging Face PEFT: adapter_model.safetensors + adapter_config.json (`PeftModel.from_pretrained`).
    Peft,
    /// The base model with the adapters folded in, as a Hugging Face folder.
    Fused,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Run id or folder.
    pub run: String,
    #[arg(long, value_enum)]
    pub format: Format,
    /// Where to write (default: <run>/export-<format>); must not exist.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let run = Run::open(&args.runs_dir.unwrap_or_else(runs_dir), &args.run)?;
    let format = match args.format {
        Format::Mlx => ExportFormat::Mlx,
        Format::Peft => ExportFormat::Peft,
        Format::Fused => ExportFormat::Fused,
    };
    let output = export_run(&run, format, args.output.as_deref())?;
    eprintln!("wrote {} adapters to {}", format.name(), output.display());
    println!("{}", output.display());
    Ok(())
}
