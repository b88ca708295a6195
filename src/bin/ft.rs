//! `ft`: FineTune's command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use finetune::device::DeviceReport;

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

#[derive(Subcommand)]
enum Command {
    /// Show the machine, MLX's backends and a measured matmul speed.
    Device {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Device { json } => {
            let report = DeviceReport::collect()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
    }
    Ok(())
}
