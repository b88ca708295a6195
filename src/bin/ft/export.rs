//! `ft export`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
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
    /// Where to write (default: <run>/export-<format>).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let run = Run::open(&args.runs_dir.unwrap_or_else(runs_dir), &args.run)?;
    let config = run.read_config()?;
    let adapters = run.adapters_dir();
    let (name, default_dir) = match args.format {
        Format::Mlx => ("mlx", run.dir.join("export-mlx")),
        Format::Peft => ("peft", run.dir.join("export-peft")),
        Format::Fused => ("fused", run.dir.join("export-fused")),
    };
    let output = args.output.unwrap_or(default_dir);
    match args.format {
        Format::Mlx => {
            std::fs::create_dir_all(&output)?;
            for file in ["adapters.safetensors", "adapter_config.json"] {
                std::fs::copy(adapters.join(file), output.join(file))?;
            }
        }
        Format::Peft => {
            let base = config.model.display().to_string();
            finetune::peft::mlx_to_peft(&adapters, &output, &base)?;
        }
        Format::Fused => {
            let options = finetune::model::LoadOptions {
                dequantize: true,
                ..Default::default()
            };
            let mut loaded = finetune::model::load(&config.model, &options)?;
            finetune::lora::load_adapters(&mut loaded.model, &adapters)?;
            finetune::export::fuse_adapters(&mut loaded)?;
            finetune::export::write_hf_folder(
                &mut loaded,
                &output,
                finetune::export::DEFAULT_SHARD_BYTES,
            )?;
        }
    }
    eprintln!("wrote {name} adapters to {}", output.display());
    println!("{}", output.display());
    Ok(())
}
