//! `ft data inspect | preview | split`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use finetune::data::prompts::{is_prompt_data, read_prompts};
use finetune::data::{
    formats, preview, templates, DatasetStats, MaskPolicy, OnBadRecord, ReadOptions, Tokenization,
    TokenizedFile,
};
use finetune::model::{self, LoadOptions, LoadedModel};

/// How a dataset is read and rendered (shared by `ft data` and `ft train`).
#[derive(Args, Clone, Default)]
pub struct DataArgs {
    /// Chat template: `model` (the model's own; the default), a built-in
    /// (chatml, alpaca, llama-2, llama-3, mistral, zephyr, vicuna, gemma,
    /// phi-3, raw), or the path of a Jinja file.
    #[arg(long)]
    pub template: Option<String>,
    /// Tokens to learn: completions (assistant turns and completions; the
    /// default), last_turn (the last assistant turn only) or all.
    #[arg(long)]
    pub mask: Option<MaskPolicy>,
    /// Records that cannot be read: error (stop and say where; the default)
    /// or skip (leave them out and report them).
    #[arg(long)]
    pub on_bad_record: Option<OnBadRecord>,
    /// Your columns for the fields the reader knows, e.g.
    /// `--columns prompt=question,completion=answer`.
    #[arg(long, value_delimiter = ',', value_parser = parse_column)]
    pub columns: Vec<(String, String)>,
}

fn parse_column(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(field, column)| (field.trim().to_string(), column.trim().to_string()))
        .filter(|(f, c)| !f.is_empty() && !c.is_empty())
        .ok_or_else(|| format!("`{s}`: expected FIELD=COLUMN"))
}

impl DataArgs {
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            on_bad_record: self.on_bad_record.unwrap_or_default(),
            columns: self.columns.iter().cloned().collect(),
        }
    }
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Tokenize a dataset with a model's tokenizer and chat template: counts,
    /// lengths, truncation, skipped records, and a preview with the trained
    /// tokens marked.
    Inspect {
        #[command(flatten)]
        common: InspectArgs,
        /// How many records to preview.
        #[arg(long, default_value_t = 1)]
        preview: usize,
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show records as the model will see them, trained text marked.
    Preview {
        #[command(flatten)]
        common: InspectArgs,
        /// First record to show (1-based).
        #[arg(long, default_value_t = 1)]
        from: usize,
        /// How many records.
        #[arg(long, short = 'n', default_value_t = 3)]
        count: usize,
        /// Print the pieces as JSON ([text, trained] pairs per record).
        #[arg(long)]
        json: bool,
    },
    /// Split a dataset into train.jsonl and valid.jsonl in a new folder
    /// (the input file is never changed).
    Split {
        /// A .jsonl, .json, .csv, .tsv or .parquet file.
        data: PathBuf,
        /// The new folder for train.jsonl and valid.jsonl.
        #[arg(long)]
        output: PathBuf,
        /// Fraction of the records for validation.
        #[arg(long, default_value_t = 0.1)]
        valid_fraction: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Records that cannot be read: error or skip.
        #[arg(long, default_value = "error")]
        on_bad_record: OnBadRecord,
    },
}

#[derive(Args)]
pub struct InspectArgs {
    /// A data file (.jsonl, .json, .csv, .tsv, .parquet, .txt) or a folder
    /// with train.* (and valid.*).
    data: PathBuf,
    /// Model whose tokenizer and template to use (default: the bundled model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Longest example in tokens; longer ones are cut.
    #[arg(long, default_value_t = 512)]
    max_length: usize,
    #[command(flatten)]
    data_args: DataArgs,
}

pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Inspect {
            common,
            preview: count,
            json,
        } => inspect(&common, count, json),
        DataCommand::Preview {
            common,
            from,
            count,
            json,
        } => {
            if is_prompt_data(&common.data, &common.data_args.read_options()) {
                return inspect_prompts(&common, from.saturating_sub(1), count, json);
            }
            let (loaded, file, _) = tokenize(&common)?;
            let start = from.saturating_sub(1);
            let shown: Vec<_> = file.examples.iter().skip(start).take(count).collect();
            if json {
                let pieces = shown
                    .iter()
                    .map(|e| preview(e, &loaded.tokenizer))
                    .collect::<finetune::Result<Vec<_>>>()?;
                println!("{}", serde_json::to_string_pretty(&pieces)?);
                return Ok(());
            }
            for (i, example) in shown.iter().enumerate() {
                print_preview(start + i + 1, example, &loaded)?;
            }
            Ok(())
        }
        DataCommand::Split {
            data,
            output,
            valid_fraction,
            seed,
            on_bad_record,
        } => split(&data, &output, valid_fraction, seed, on_bad_record),
    }
}

/// The model (for its tokenizer) and the chat template of `args`.
fn model_and_template(args: &InspectArgs) -> anyhow::Result<(LoadedModel, templates::Resolved)> {
    let model = args
        .model
        .clone()
        .unwrap_or_else(finetune::paths::default_model);
    let model = crate::models::fetch_if_hub_id(&model)?;
    let loaded = model::load(&model, &LoadOptions::default())?;
    let template = templates::resolve(
        args.data_args.template.as_deref(),
        loaded.chat_template.as_ref(),
        &loaded.tokenizer,
    )?;
    Ok((loaded, template))
}

fn tokenize(args: &InspectArgs) -> anyhow::Result<(LoadedModel, TokenizedFile, Vec<String>)> {
    let (loaded, template) = model_and_template(args)?;
    let tokenization = Tokenization {
        template: Some(&template.template),
        tokenizer: &loaded.tokenizer,
        policy: args.data_args.mask.unwrap_or_default(),
        max_length: args.max_length,
    };
    let file = tokenization.file(&args.data, &args.data_args.read_options(), None)?;
    let warnings = if file.chat_records > 0 {
        template.warnings
    } else {
        Vec::new()
    };
    Ok((loaded, file, warnings))
}

fn inspect(args: &InspectArgs, count: usize, json: bool) -> anyhow::Result<()> {
    if is_prompt_data(&args.data, &args.data_args.read_options()) {
        return inspect_prompts(args, 0, count, json);
    }
    let (loaded, file, warnings) = tokenize(args)?;
    if file.pairs > 0 {
        return inspect_pairs(args, &loaded, &file, &warnings, count, json);
    }
    let stats = DatasetStats::of(&file.examples);
    if json {
        let value = serde_json::json!({
            "file": file.source,
            "stats": stats,
            "skipped_empty": file.skipped_empty,
            "skipped": file.skipped,
            "chat_records": file.chat_records,
            "warnings": warnings,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    println!("file             {}", file.source.display());
    println!(
        "records          {} examples ({} with nothing to learn left out)",
        stats.records, file.skipped_empty
    );
    print_skipped(&file);
    println!(
        "tokens           {} in all, {} trained ({:.1}%)",
        stats.total_tokens,
        stats.trained_tokens,
        100.0 * stats.trained_tokens as f64 / stats.total_tokens.max(1) as f64
    );
    println!(
        "length           min {}, mean {:.1}, max {} tokens; {} cut to {}",
        stats.min_length, stats.mean_length, stats.max_length, stats.truncated, args.max_length
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
    for (i, example) in file.examples.iter().take(count).enumerate() {
        print_preview(i + 1, &example, &loaded)?;
    }
    Ok(())
}

/// A preference set: each side's figures, and pairs shown side by side.
fn inspect_pairs(
    args: &InspectArgs,
    loaded: &LoadedModel,
    file: &TokenizedFile,
    warnings: &[String],
    count: usize,
    json: bool,
) -> anyhow::Result<()> {
    use finetune::data::Side;
    let chosen = DatasetStats::of(&Side(&file.examples, 0));
    let rejected = DatasetStats::of(&Side(&file.examples, 1));
    if json {
        let value = serde_json::json!({
            "file": file.source,
            "pairs": file.pairs,
            "chosen": chosen,
            "rejected": rejected,
            "skipped_empty": file.skipped_empty,
            "skipped": file.skipped,
            "chat_records": file.chat_records,
            "warnings": warnings,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    for w in warnings {
        eprintln!("warning: {w}");
    }
    println!("file             {}", file.source.display());
    println!(
        "records          {} preference pairs ({} with nothing to learn left out)",
        file.pairs, file.skipped_empty
    );
    print_skipped(file);
    for (name, stats) in [("chosen", &chosen), ("rejected", &rejected)] {
        println!(
            "{name:<16} {} tokens, {} trained (the answers); length min {}, mean {:.1}, max {}; {} cut to {}",
            stats.total_tokens,
            stats.trained_tokens,
            stats.min_length,
            stats.mean_length,
            stats.max_length,
            stats.truncated,
            args.max_length
        );
    }
    for pair in 0..count.min(file.pairs) {
        for (side, name) in [(0, "chosen"), (1, "rejected")] {
            let example = file.examples.get(2 * pair + side)?;
            print_labelled(&format!("pair {} {name}", pair + 1), &example, loaded)?;
        }
    }
    Ok(())
}

/// Prompt-only data (for GRPO): how many prompts, how many carry a
/// reference answer, their lengths, and prompts `from..from + count`
/// rendered as the model continues them, each with its answer.
fn inspect_prompts(
    args: &InspectArgs,
    from: usize,
    count: usize,
    json: bool,
) -> anyhow::Result<()> {
    let (loaded, template) = model_and_template(args)?;
    let set = read_prompts(
        &args.data,
        &args.data_args.read_options(),
        &template.template,
        &loaded.tokenizer,
        args.max_length,
    )?;
    let stats = DatasetStats::of(&set);
    let shown = set.prompts.iter().enumerate().skip(from).take(count);
    let text_of = |tokens: &[u32]| loaded.tokenizer.decode_with_special(tokens);
    if json {
        let previews = shown
            .map(|(_, p)| {
                Ok(serde_json::json!({"prompt": text_of(&p.tokens)?, "answer": p.answer}))
            })
            .collect::<finetune::Result<Vec<_>>>()?;
        let value = serde_json::json!({
            "file": set.source,
            "prompts": set.prompts.len(),
            "with_answer": set.with_answer(),
            "stats": stats,
            "too_long": set.too_long,
            "skipped": set.skipped,
            "warnings": template.warnings,
            "previews": previews,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    for w in &template.warnings {
        eprintln!("warning: {w}");
    }
    println!("file             {}", set.source.display());
    println!(
        "records          {} prompts for GRPO, {} with a reference answer (for exact_match)",
        set.prompts.len(),
        set.with_answer()
    );
    if !set.skipped.is_empty() {
        println!("skipped          {} unreadable records:", set.skipped.len());
        for s in set.skipped.iter().take(10) {
            println!("  {}{}: {}", set.source.display(), s.location, s.reason);
        }
    }
    println!(
        "prompt length    min {}, mean {:.1}, max {} tokens; {} longer than {} left out",
        stats.min_length, stats.mean_length, stats.max_length, set.too_long, args.max_length
    );
    for (i, prompt) in shown {
        println!("\nprompt {} ({}):", i + 1, prompt.location);
        println!("{}", text_of(&prompt.tokens)?);
        match &prompt.answer {
            Some(answer) => println!("reference answer: {answer}"),
            None => println!("reference answer: none"),
        }
    }
    Ok(())
}

/// The records left out as unreadable (the first ten, then a count).
fn print_skipped(file: &TokenizedFile) {
    if file.skipped.is_empty() {
        return;
    }
    println!(
        "skipped          {} unreadable records:",
        file.skipped.len()
    );
    for s in file.skipped.iter().take(10) {
        println!("  {}{}: {}", file.source.display(), s.location, s.reason);
    }
    if file.skipped.len() > 10 {
        println!("  … and {} more", file.skipped.len() - 10);
    }
}

fn print_preview(
    number: usize,
    example: &finetune::data::Example,
    loaded: &LoadedModel,
) -> anyhow::Result<()> {
    print_labelled(&format!("example {number}"), example, loaded)
}

fn print_labelled(
    label: &str,
    example: &finetune::data::Example,
    loaded: &LoadedModel,
) -> anyhow::Result<()> {
    let color = std::io::stdout().is_terminal();
    println!(
        "\n{label} (trained text {}):",
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
    Ok(())
}

fn split(
    data: &Path,
    output: &Path,
    fraction: f64,
    seed: u64,
    on_bad: OnBadRecord,
) -> anyhow::Result<()> {
    use rand::SeedableRng;
    use std::io::Write;
    if !(0.0..1.0).contains(&fraction) || fraction == 0.0 {
        return Err(finetune::Error::Invalid(format!(
            "--valid-fraction must be between 0 and 1, got {fraction}"
        ))
        .into());
    }
    if output.exists() {
        return Err(finetune::Error::Invalid(format!(
            "{}: already exists; choose a new folder",
            output.display()
        ))
        .into());
    }
    // Two streaming passes, so memory holds one record, not the file: the
    // first counts the rows (and stops at a bad one), the second writes
    // each to the part chosen for it by a seeded draw of row numbers.
    let mut rows = 0usize;
    let mut skipped = 0;
    for row in formats::Rows::open(data)? {
        let row = row?;
        match row.value {
            Ok(_) => rows += 1,
            Err(reason) if on_bad == OnBadRecord::Skip => {
                skipped += 1;
                eprintln!("skipped {}{}: {reason}", data.display(), row.location);
            }
            Err(reason) => {
                return Err(finetune::Error::Invalid(format!(
                    "{}{}: {reason}",
                    data.display(),
                    row.location
                ))
                .into())
            }
        }
    }
    if rows < 2 {
        return Err(finetune::Error::Invalid(format!(
            "{}: {rows} usable record(s); a split needs at least 2",
            data.display()
        ))
        .into());
    }
    let n_valid = ((rows as f64 * fraction).round() as usize).clamp(1, rows - 1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut is_valid = vec![false; rows];
    for i in rand::seq::index::sample(&mut rng, rows, n_valid) {
        is_valid[i] = true;
    }
    let staging = finetune::files::Staging::new(output)?;
    let create = |name: &str| -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
        let path = staging.path().join(name);
        let file = std::fs::File::create(&path).map_err(|source| finetune::Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(std::io::BufWriter::new(file))
    };
    let (mut train_out, mut valid_out) = (create("train.jsonl")?, create("valid.jsonl")?);
    let mut index = 0;
    for row in formats::Rows::open(data)? {
        let Ok(value) = row?.value else { continue };
        let out = if is_valid[index] {
            &mut valid_out
        } else {
            &mut train_out
        };
        serde_json::to_writer(&mut *out, &value)?;
        out.write_all(b"\n")?;
        index += 1;
    }
    if index != rows {
        return Err(finetune::Error::Invalid(format!(
            "{}: changed while it was being split; try again",
            data.display()
        ))
        .into());
    }
    train_out.flush()?;
    valid_out.flush()?;
    drop((train_out, valid_out));
    staging.publish()?;
    let (train, valid) = (rows - n_valid, n_valid);
    eprintln!(
        "wrote {train} training and {valid} validation records to {}{}",
        output.display(),
        if skipped > 0 {
            format!(" ({skipped} unreadable records skipped)")
        } else {
            String::new()
        }
    );
    Ok(())
}
