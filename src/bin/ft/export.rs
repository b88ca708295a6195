//! `ft export`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use finetune::export::{export_run, export_run_gguf, export_run_gguf_lora, ExportFormat};
use finetune::gguf::mix::FileType;
use finetune::runs::{runs_dir, Run};

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// mlx-lm: adapters.safetensors + adapter_config.json (`mlx_lm.generate --adapter-path`).
    Mlx,
    /// Hugging Face PEFT: adapter_model.safetensors + adapter_config.json (`PeftModel.from_pretrained`).
    Peft,
    /// The base model with the adapters folded in, as a Hugging Face folder.
    Fused,
    /// The base model with the adapters folded in, as one GGUF file for
    /// llama.cpp, Ollama and LM Studio (file type from --quant).
    Gguf,
    /// The adapter alone as llama.cpp's LoRA GGUF (`llama-cli --lora`,
    /// Ollama's ADAPTER), for the base GGUF the run trained on.
    GgufLora,
}

/// `--quant`: a GGUF file type by llama.cpp's name (f16, q8_0, q4_k_m, …).
pub fn quant_parser() -> impl clap::builder::TypedValueParser<Value = FileType> {
    use clap::builder::TypedValueParser;
    // Parsed in any case; listed in llama-quantize's spelling.
    let names: Vec<clap::builder::PossibleValue> = FileType::all()
        .map(|t| clap::builder::PossibleValue::new(t.name()))
        .collect();
    clap::builder::PossibleValuesParser::new(names)
        .map(|s| FileType::from_name(&s).expect("a listed value"))
}

/// Size and per-tensor types of a GGUF just written, and where each
/// tensor's weights came from.
pub fn print_gguf_report(report: &finetune::export::gguf::GgufReport) {
    let mut counts: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for t in &report.tensors {
        *counts
            .entry((t.written.clone(), t.came_from.clone()))
            .or_default() += 1;
    }
    eprintln!(
        "wrote {} ({}, {:.1} MiB, {} tensors)",
        report.path.display(),
        report.file_type,
        report.bytes as f64 / (1u64 << 20) as f64,
        report.tensors.len()
    );
    for ((written, from), n) in counts {
        eprintln!("  {n:>4} × {written:<6} from {from}");
    }
    println!("{}", report.path.display());
}

#[derive(Args)]
pub struct ExportArgs {
    /// Run id or folder.
    pub run: String,
    #[arg(long, value_enum)]
    pub format: Format,
    /// GGUF file type (with --format gguf): f16, bf16, q8_0, q6_k, q5_k_m,
    /// q4_k_m, q4_0, … — per-tensor types as llama-quantize chooses them.
    #[arg(long, default_value = "q8_0", ignore_case = true, value_parser = quant_parser())]
    pub quant: FileType,
    /// Where to write (default: <run>/export-<format>); must not exist.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// Skip the export check (loading the export back and comparing it
    /// with the trained model on the run's validation examples).
    #[arg(long)]
    pub no_check: bool,
}

/// Runs the export check on what was just written, prints its table and
/// writes it beside the export; an export that does not behave like what it
/// came from is an error.
pub fn check_and_report(
    subject: &finetune::export::check::Subject,
    exported: &finetune::export::check::Exported,
) -> anyhow::Result<()> {
    let options = finetune::export::check::CheckOptions::default();
    let report = finetune::export::check::check_export(subject, exported, &options)?;
    let written = report.write_beside()?;
    eprint!("{}", report.table());
    eprintln!("  (written to {})", written.display());
    if !report.passed {
        anyhow::bail!(
            "the export check failed: {} (the export is kept at {} for inspection)",
            report.failures().join("; "),
            exported.path().display()
        );
    }
    Ok(())
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    use finetune::export::check::{Exported, Subject};
    let run = Run::open(&args.runs_dir.unwrap_or_else(runs_dir), &args.run)?;
    let exported = match args.format {
        Format::Gguf => {
            let report = export_run_gguf(&run, args.quant, args.output.as_deref())?;
            print_gguf_report(&report);
            Exported::Gguf(report.path, args.quant)
        }
        Format::GgufLora => {
            let r = export_run_gguf_lora(&run, args.output.as_deref())?;
            eprintln!(
                "wrote {} (LoRA rank {}, alpha {}, {} projections, {:.1} MiB)",
                r.path.display(),
                r.rank,
                r.alpha,
                r.projections,
                r.bytes as f64 / (1u64 << 20) as f64
            );
            println!("{}", r.path.display());
            Exported::GgufLora(r.path)
        }
        Format::Mlx | Format::Peft | Format::Fused => {
            let format = match args.format {
                Format::Mlx => ExportFormat::Mlx,
                Format::Peft => ExportFormat::Peft,
                _ => ExportFormat::Fused,
            };
            let output = export_run(&run, format, args.output.as_deref())?;
            eprintln!("wrote {} to {}", format.name(), output.display());
            println!("{}", output.display());
            match format {
                ExportFormat::Fused => Exported::Fused(output),
                _ => Exported::Adapters(output),
            }
        }
    };
    if args.no_check {
        return Ok(());
    }
    check_and_report(&Subject::of_run(&run)?, &exported)
}
