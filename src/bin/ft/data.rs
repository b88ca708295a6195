//! `ft data inspect`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Subcommand;
use finetune::data::{preview, tokenize_file, DatasetStats, MaskPolicy};
use finetune::model::{self, LoadOptions};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Tokenize a dataset with a model's tokenizer and chat template: counts,
    /// lengths, truncation, and a preview with the trained tokens marked.
    Inspect {
        /// A .jsonl file or a folder with train.jsonl.
        data: PathBuf,
        /// Model whose tokenizer and template to use (default: the bundled model).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Longest example in tokens; longer ones are cut.
        #[arg(long, default_value_t = 512)]
        max_length: usize,
        /// Count every token as trained (default: only the replies).
        #[arg(long)]
        train_on_prompt: bool,
        /// How many records to preview.
        #[arg(long, default_value_t = 1)]
        preview: usize,
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    let DataCommand::Inspect {
        data,
        model,
        max_length,
        train_on_prompt,
        preview: count,
        json,
    } = command;
    let model = model.unwrap_or_else(finetune::paths::default_model);
    let loaded = model::load(&model, &LoadOptions::default())?;
    let policy = if train_on_prompt {
        MaskPolicy::All
    } else {
        MaskPolicy::Completions
    };
    let file = tokenize_file(
        &data,
        loaded.chat_template.as_ref(),
        &loaded.tokenizer,
        policy,
        max_length,
    )?;
    let stats = DatasetStats::of(&file.examples);
    if json {
        let value = serde_json::json!({ "stats": stats, "skipped_empty": file.skipped_empty });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "records          {} ({} with nothing to learn left out)",
        stats.records, file.skipped_empty
    );
    println!(
        "tokens           {} in all, {} trained ({:.1}%)",
        stats.total_tokens,
        stats.trained_tokens,
        100.0 * stats.trained_tokens as f64 / stats.total_tokens.max(1) as f64
    );
    println!(
        "length           min {}, mean {:.1}, max {} tokens; {} cut to {max_length}",
        stats.min_length, stats.mean_length, stats.max_length, stats.truncated
    );
    let widest = stats
        .length_histogram
        .iter()
        .map(|b| b.1)
        .max()
        .unwrap_or(1)
        .max(1);
    for (bound, n) in &stats.length_histogram {
        println!("  ≤{bound:<6} {n:>7}  {}", "#".repeat(n * 40 / widest));
    }
    let color = std::io::stdout().is_terminal();
    for (i, example) in file.examples.iter().take(count).enumerate() {
        println!(
            "\nrecord {} (trained text {}):",
            i + 1,
            if color { "in green" } else { "between ⟦ ⟧" }
        );
        let mut text = String::new();
        for (piece, trained) in preview(example, &loaded.tokenizer)? {
            match (trained, color) {
                (true, true) => text.push_str(&format!("\x1b[32m{piece}\x1b[0m")),
                (true, false) => text.push_str(&format!("⟦{piece}⟧")),
                (false, _) => text.push_str(&piece),
            }
        }
        println!("{text}");
    }
    Ok(())
}
