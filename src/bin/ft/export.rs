//! `ft export`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
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
    /// An Ollama folder: the fused GGUF (type from --quant) and a Modelfile
    /// with the chat template in Ollama's form and its stop tokens, for
    /// `ollama create NAME -f Modelfile`.
    Ollama,
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
    print_gguf_summary(report);
    println!("{}", report.path.display());
}

/// Size and per-tensor types of a GGUF just written, to stderr.
fn print_gguf_summary(report: &finetune::export::gguf::GgufReport) {
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
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
}

#[derive(Args)]
pub struct ExportArgs {
    /// Run id or folder.
    pub run: String,
    #[arg(long, value_enum)]
    pub format: Format,
    /// GGUF file type (with --format gguf or ollama): f16, bf16, q8_0, q6_k, q5_k_m,
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

/// Prints the check's table; an export that does not behave like what it
/// came from is an error.
pub fn report_check(
    report: &finetune::export::check::CheckReport,
    written: &std::path::Path,
) -> anyhow::Result<()> {
    eprint!("{}", report.table());
    eprintln!("  (written to {})", written.display());
    if !report.passed {
        anyhow::bail!(
            "the export check failed: {} (the export is kept at {} for inspection)",
            report.failures().join("; "),
            report.export.display()
        );
    }
    Ok(())
}

/// Runs the export check on what was just written (`ft models convert`),
/// prints its table and writes it beside the export.
pub fn check_and_report(
    subject: &finetune::export::check::Subject,
    exported: &finetune::export::check::Exported,
) -> anyhow::Result<()> {
    let options = finetune::export::check::CheckOptions::default();
    let report = finetune::export::check::check_export(subject, exported, &options)?;
    let written = report.write_beside()?;
    report_check(&report, &written)
}

/// A line per phase on stderr, and a bar while tensors are written.
fn show_progress() -> impl FnMut(&finetune::export::job::ExportProgress) {
    let mut phase = String::new();
    let mut bar: Option<indicatif::ProgressBar> = None;
    move |p| {
        if p.phase != phase {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            phase = p.phase.clone();
            if p.total == 0 {
                eprintln!("{phase}…");
            } else {
                let b = indicatif::ProgressBar::new(p.total as u64);
                b.set_style(
                    indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}")
                        .expect("a valid template"),
                );
                b.set_message(phase.clone());
                bar = Some(b);
            }
        }
        if let Some(b) = &bar {
            b.set_position(p.done as u64);
            if p.done == p.total {
                b.finish_and_clear();
            }
        }
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    use finetune::export::job::{export, ExportRequest, Target};
    let run = Run::open(&args.runs_dir.unwrap_or_else(runs_dir), &args.run)?;
    let target = match args.format {
        Format::Mlx => Target::Mlx,
        Format::Peft => Target::Peft,
        Format::Fused => Target::Fused,
        Format::Gguf => Target::Gguf,
        Format::GgufLora => Target::GgufLora,
        Format::Ollama => Target::Ollama,
    };
    let request = ExportRequest {
        target,
        quant: Some(args.quant.name().to_string()),
        output: args.output,
        check: !args.no_check,
    };
    let outcome = export(&run, &request, &mut show_progress())?;
    match &outcome.gguf {
        Some(report) => print_gguf_summary(report),
        None => eprintln!(
            "wrote {} ({:.1} MiB) in {:.1} s",
            outcome.path.display(),
            outcome.bytes as f64 / (1u64 << 20) as f64,
            outcome.seconds
        ),
    }
    if target == Target::Ollama {
        eprintln!(
            "  for Ollama: cd {} && ollama create NAME -f Modelfile",
            outcome.path.display()
        );
    }
    println!("{}", outcome.path.display());
    match (&outcome.check, &outcome.check_file) {
        (Some(report), Some(file)) => report_check(report, file),
        _ => Ok(()),
    }
}
