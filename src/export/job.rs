//! One export of a run, from a request the CLI and the app share: write it
//! in the chosen form, say what it is doing, then run the export check.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::check::{check_export, CheckOptions, CheckReport, Exported, Subject};
use super::{export_run, export_run_gguf, export_run_gguf_lora, ExportFormat};
use crate::error::{Error, Result};
use crate::gguf::mix::FileType;
use crate::runs::Run;

/// The forms a run can be exported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Mlx,
    Peft,
    Fused,
    Gguf,
    GgufLora,
    Ollama,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mlx => "mlx",
            Self::Peft => "peft",
            Self::Fused => "fused",
            Self::Gguf => "gguf",
            Self::GgufLora => "gguf-lora",
            Self::Ollama => "ollama",
        }
    }
}

/// What to export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRequest {
    pub target: Target,
    /// GGUF file type for `gguf` and `ollama` (llama.cpp's name: q4_k_m…;
    /// default q8_0).
    #[serde(default)]
    pub quant: Option<String>,
    /// Where to write (default: inside the run folder).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Run the export check afterwards (default true).
    #[serde(default = "yes")]
    pub check: bool,
}

fn yes() -> bool {
    true
}

/// What an export is doing, for a progress bar.
#[derive(Debug, Clone, Serialize)]
pub struct ExportProgress {
    pub phase: String,
    /// Steps of the phase done, of `total` (0 of 0: no count).
    pub done: usize,
    pub total: usize,
}

/// What was written, with the check's report.
#[derive(Debug, Clone, Serialize)]
pub struct ExportOutcome {
    pub path: PathBuf,
    pub target: Target,
    pub bytes: u64,
    /// Seconds spent writing (the check's own time is in its report).
    pub seconds: f64,
    /// Per-tensor types and sources of a GGUF written.
    pub gguf: Option<super::gguf::GgufReport>,
    pub check: Option<CheckReport>,
    /// Where the check's table was written.
    pub check_file: Option<PathBuf>,
}

/// Parses a GGUF file type name, naming the choices when it is unknown.
pub fn parse_quant(name: Option<&str>) -> Result<FileType> {
    let name = name.unwrap_or("q8_0");
    FileType::from_name(name).ok_or_else(|| {
        Error::Invalid(format!(
            "unknown GGUF type `{name}`: use one of {}",
            FileType::all()
                .map(|t| t.name().to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Exports `run` as `request` says; `on_phase` hears what is being done.
/// A check that fails is in the outcome (its `passed` is false), not an
/// error: the caller decides how loudly to say it.
pub fn export(
    run: &Run,
    request: &ExportRequest,
    on_progress: &mut dyn FnMut(&ExportProgress),
) -> Result<ExportOutcome> {
    let on_phase = |on_progress: &mut dyn FnMut(&ExportProgress), phase: &str| {
        on_progress(&ExportProgress {
            phase: phase.into(),
            done: 0,
            total: 0,
        })
    };
    let start = std::time::Instant::now();
    let output = request.output.as_deref();
    let quant = parse_quant(request.quant.as_deref())?;
    let mut gguf = None;
    let exported = match request.target {
        Target::Mlx | Target::Peft | Target::Fused => {
            let format = match request.target {
                Target::Mlx => ExportFormat::Mlx,
                Target::Peft => ExportFormat::Peft,
                _ => ExportFormat::Fused,
            };
            on_phase(on_progress, &format!("writing {}", format.name()));
            let path = export_run(run, format, output)?;
            match format {
                ExportFormat::Fused => Exported::Fused(path),
                _ => Exported::Adapters(path),
            }
        }
        Target::Gguf => {
            on_phase(
                on_progress,
                &format!("fusing the adapters for GGUF {}", quant.name()),
            );
            let phase = format!("writing GGUF {} tensors", quant.name());
            let report = export_run_gguf(run, quant, output, &mut |done, total| {
                on_progress(&ExportProgress {
                    phase: phase.clone(),
                    done,
                    total,
                })
            })?;
            let path = report.path.clone();
            gguf = Some(report);
            Exported::Gguf(path, quant)
        }
        Target::GgufLora => {
            on_phase(on_progress, "writing the LoRA GGUF");
            Exported::GgufLora(export_run_gguf_lora(run, output)?.path)
        }
        Target::Ollama => {
            on_phase(
                on_progress,
                &format!("fusing the adapters for GGUF {}", quant.name()),
            );
            let phase = format!("writing GGUF {} tensors for Ollama", quant.name());
            let report = super::export_run_ollama(run, quant, output, &mut |done, total| {
                on_progress(&ExportProgress {
                    phase: phase.clone(),
                    done,
                    total,
                })
            })?;
            let dir = report
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            gguf = Some(report);
            Exported::Ollama(dir, quant)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let path = exported.path().to_path_buf();
    let mut outcome = ExportOutcome {
        bytes: super::check::size_of(&path),
        path,
        target: request.target,
        seconds,
        gguf,
        check: None,
        check_file: None,
    };
    if request.check {
        on_phase(on_progress, "checking the export against the trained model");
        let report = check_export(&Subject::of_run(run)?, &exported, &CheckOptions::default())?;
        outcome.check_file = Some(report.write_beside()?);
        outcome.check = Some(report);
    }
    Ok(outcome)
}
