//! `ft runs list | show`.

use std::path::PathBuf;

use clap::Subcommand;
use finetune::runs::{list, runs_dir, Run};
use finetune::train::TrainEvent;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Past runs, newest first, with how they ended.
    List {
        /// Folder for runs (default: $FINETUNE_RUNS or the platform data folder).
        #[arg(long)]
        runs_dir: Option<PathBuf>,
    },
    /// One run's settings and results.
    Show {
        /// Run id (folder name) or path.
        run: String,
        #[arg(long)]
        runs_dir: Option<PathBuf>,
        /// Print the recorded events as JSON lines.
        #[arg(long)]
        events: bool,
    },
}

/// One line about how a run ended, from its events.
fn outcome(events: &[TrainEvent]) -> String {
    let last_step = events.iter().rev().find_map(|e| match e {
        TrainEvent::Step { step, loss, .. } => Some((*step, *loss)),
        _ => None,
    });
    let total = events.iter().find_map(|e| match e {
        TrainEvent::Started { total_steps, .. } => Some(*total_steps),
        _ => None,
    });
    let progress = match (last_step, total) {
        (Some((step, loss)), Some(total)) => format!("step {step}/{total}, loss {loss:.4}"),
        (None, Some(total)) => format!("0/{total} steps"),
        _ => "no steps".into(),
    };
    match events.last() {
        Some(TrainEvent::Finished { summary }) => format!(
            "finished: {} steps, final loss {}{}",
            summary.steps,
            summary.final_loss.map_or("-".into(), |l| format!("{l:.4}")),
            summary
                .best_val_loss
                .map_or(String::new(), |v| format!(", best validation {v:.4}"))
        ),
        Some(TrainEvent::Stopped { reason, .. }) => format!("stopped ({reason}): {progress}"),
        Some(TrainEvent::Failed { error }) => format!("failed: {error}"),
        Some(_) => format!("interrupted: {progress}"),
        None => "no events".into(),
    }
}

pub fn run(command: RunsCommand) -> anyhow::Result<()> {
    match command {
        RunsCommand::List { runs_dir: dir } => {
            let root = dir.unwrap_or_else(runs_dir);
            let runs = list(&root)?;
            if runs.is_empty() {
                eprintln!("no runs in {}", root.display());
            }
            for run in runs {
                let events = run.read_events()?;
                println!("{}  {}", run.id, outcome(&events));
            }
        }
        RunsCommand::Show {
            run,
            runs_dir: dir,
            events,
        } => {
            let root = dir.unwrap_or_else(runs_dir);
            let run = Run::open(&root, &run)?;
            let recorded = run.read_events()?;
            if events {
                for e in &recorded {
                    println!("{}", serde_json::to_string(e)?);
                }
                return Ok(());
            }
            let config = run.read_config()?;
            println!("run       {}", run.id);
            println!("folder    {}", run.dir.display());
            println!("model     {}", config.model.display());
            println!("data      {}", config.data.display());
            println!(
                "lora      rank {}, alpha {} (scale {}), {}",
                config.lora.rank,
                config.lora.alpha,
                config.lora.scale(),
                config.lora.targets.join(", ")
            );
            println!("outcome   {}", outcome(&recorded));
            println!("adapters  {}", run.adapters_dir().display());
        }
    }
    Ok(())
}
