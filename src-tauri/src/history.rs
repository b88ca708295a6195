//! Past runs for the Runs panel (the same folder as `ft runs`), and
//! exporting a run (every form `ft export` writes, with the export check).

use finetune::export::job::{ExportOutcome, ExportProgress, ExportRequest};
use finetune::gguf::mix::FileType;
use finetune::runs::{runs_dir, Run};
use finetune::train::TrainEvent;
use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;

use crate::error::CommandError;
use crate::workbench::background;

/// One line of the run history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub id: String,
    pub dir: String,
    pub model: String,
    pub data: String,
    /// finished, stopped, failed, or running / interrupted (no end event).
    pub status: String,
    pub steps: usize,
    pub total_steps: Option<usize>,
    pub final_loss: Option<f32>,
    pub best_val_loss: Option<f32>,
    pub resumable: bool,
}

fn info(run: &Run) -> finetune::Result<RunInfo> {
    let config = run.read_config()?;
    let events = run.read_events()?;
    let mut info = RunInfo {
        id: run.id.clone(),
        dir: run.dir.display().to_string(),
        model: config.model.display().to_string(),
        data: config.data.display().to_string(),
        status: "interrupted".into(),
        steps: 0,
        total_steps: None,
        final_loss: None,
        best_val_loss: None,
        resumable: false,
    };
    for e in &events {
        match e {
            TrainEvent::Started { total_steps, .. } => info.total_steps = Some(*total_steps),
            TrainEvent::Step { step, loss, .. } => {
                info.steps = *step;
                info.final_loss = Some(*loss);
            }
            TrainEvent::Eval { val_loss, best, .. } if *best => {
                info.best_val_loss = Some(*val_loss)
            }
            TrainEvent::Finished { .. } => info.status = "finished".into(),
            TrainEvent::Stopped { .. } => info.status = "stopped".into(),
            TrainEvent::Failed { .. } => info.status = "failed".into(),
            _ => {}
        }
    }
    let has_checkpoint = std::fs::read_dir(run.checkpoints_dir())
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    info.resumable = info.status != "finished" && has_checkpoint;
    Ok(info)
}

/// The history, read on a worker thread: parsing every run's events can
/// take a while with many long runs, and the window must not wait on it.
#[tauri::command]
pub async fn list_runs(
    state: tauri::State<'_, crate::TrainingState>,
) -> Result<Vec<RunInfo>, CommandError> {
    let running = state.running();
    background(move || {
        let runs = finetune::runs::list(&runs_dir())?;
        Ok(runs
            .iter()
            .filter_map(|r| info(r).map(|i| (r, i)).ok())
            .map(|(run, mut i)| {
                // This window's job, or a run another process (`ft train`)
                // holds: either way not resumable from here.
                if running.as_deref() == Some(i.id.as_str()) || run.in_use().is_some() {
                    i.status = "running".into();
                    i.resumable = false;
                }
                i
            })
            .collect())
    })
    .await
}

#[tauri::command]
pub async fn run_events(id: String) -> Result<Vec<TrainEvent>, CommandError> {
    background(move || Run::open(&runs_dir(), &id)?.read_events()).await
}

/// Exports the run as `request` says (mlx-lm, PEFT, fused, GGUF of a
/// type, GGUF LoRA or Ollama), telling `on_progress` what it is doing,
/// then runs the export check; the outcome carries the check's table.
#[tauri::command]
pub async fn export_run(
    id: String,
    request: ExportRequest,
    on_progress: Channel<ExportProgress>,
) -> Result<ExportOutcome, CommandError> {
    background(move || {
        let run = Run::open(&runs_dir(), &id)?;
        finetune::export::job::export(&run, &request, &mut |p| {
            // A closed window only stops the reports, not the export.
            let _ = on_progress.send(p.clone());
        })
    })
    .await
}

/// One choice of the GGUF quant picker: llama.cpp's name and the exact size
/// of the file it would write for this run.
#[derive(Debug, Clone, Serialize)]
pub struct QuantChoice {
    pub name: String,
    pub bytes: u64,
}

/// The GGUF types offered for the run's model, each with its file size,
/// computed before anything is written.
#[tauri::command]
pub async fn gguf_sizes(id: String) -> Result<Vec<QuantChoice>, CommandError> {
    background(move || {
        let run = Run::open(&runs_dir(), &id)?;
        let offered: Vec<FileType> = OFFERED
            .iter()
            .filter_map(|n| FileType::from_name(n))
            .collect();
        Ok(finetune::export::run_gguf_sizes(&run, &offered)?
            .into_iter()
            .map(|(t, bytes)| QuantChoice {
                name: t.name().to_ascii_lowercase(),
                bytes,
            })
            .collect())
    })
    .await
}

/// The types the picker offers, best quality first.
const OFFERED: &[&str] = &["f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"];
