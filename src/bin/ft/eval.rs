//! `ft eval`: measure a model (and its adapters) on a text.
//!
//! `ft eval perplexity` follows llama.cpp's `llama-perplexity` protocol so
//! that the two print comparable figures for the same model and text.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use finetune::mlx_rs::Array;
use finetune::model::{self, LoadOptions};
use serde::Serialize;

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Perplexity of a model on a text file, measured as llama.cpp's
    /// `llama-perplexity` measures it.
    #[command(long_about = PERPLEXITY_ABOUT)]
    Perplexity(PerplexityArgs),
}

const PERPLEXITY_ABOUT: &str = "\
Perplexity of a model on a text file, measured as llama.cpp's `llama-perplexity` \
measures it (tools/perplexity/perplexity.cpp, default mode), so that the figures \
can be compared:

  1. The whole file is tokenized once, special tokens in it read as plain text, \
with BOS in front when the model asks for one (add_bos).
  2. The tokens are cut into floor(n / ctx) chunks of --ctx tokens; the tail \
that does not fill a chunk is left out. The text must give at least 2 × ctx tokens.
  3. Each chunk is scored on its own, from an empty cache; when the model asks \
for BOS, the chunk's first token is replaced by BOS.
  4. Only the second half of each chunk counts: the predictions from position \
ctx/2 on, i.e. the ctx − ctx/2 − 1 tokens at positions ctx/2 + 1 … ctx − 1.
  5. The perplexity is exp(mean negative log-likelihood) over every scored token \
of every chunk.";

#[derive(Args)]
pub struct PerplexityArgs {
    /// A .gguf file, a Hugging Face model folder, or a hub id.
    pub model: PathBuf,
    /// The text to measure on (UTF-8).
    #[arg(long, short)]
    pub file: PathBuf,
    /// LoRA adapters to apply: a run id, a run folder, or an mlx-lm / PEFT adapter folder.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Tokens per chunk (llama-perplexity's -c / --ctx-size; 512 there too).
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score only the first N chunks (llama-perplexity's --chunks).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Chunks evaluated together in one forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Keep quantized weights (GGUF Q4/Q8) quantized (by default expanded to
    /// float32 when MLX runs on the CPU, as `ft generate` does).
    #[arg(long)]
    pub keep_quantized: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `ft eval perplexity --json` prints.
#[derive(Serialize)]
struct PerplexityReport {
    model: String,
    file: String,
    adapter: Option<String>,
    ctx: usize,
    /// Tokens of the whole text (BOS included when the model adds one).
    tokens: usize,
    chunks: usize,
    /// Tokens whose likelihood was counted.
    scored_tokens: usize,
    add_bos: bool,
    mean_nll: f64,
    perplexity: f64,
    seconds: f64,
}

pub fn run(command: EvalCommand) -> anyhow::Result<()> {
    match command {
        EvalCommand::Perplexity(args) => perplexity(args),
    }
}

fn invalid(message: String) -> anyhow::Error {
    finetune::Error::Invalid(message).into()
}

/// The text of `path`; a missing, unreadable or empty file is bad input.
fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)
        .map_err(|e| invalid(format!("{}: cannot read the text: {e}", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| invalid(format!("{}: not UTF-8 text: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Err(invalid(format!(
            "{}: the file is empty; perplexity needs a text",
            path.display()
        )));
    }
    Ok(text)
}

fn perplexity(args: PerplexityArgs) -> anyhow::Result<()> {
    if args.ctx < 4 {
        return Err(invalid(format!(
            "--ctx {}: a chunk needs at least 4 tokens",
            args.ctx
        )));
    }
    if args.batch == 0 || args.chunks == Some(0) {
        return Err(invalid("--batch and --chunks must be at least 1".into()));
    }
    // Read the text first: a bad file is reported before a slow model load.
    let text = read_text(&args.file)?;

    let start = std::time::Instant::now();
    let on_cpu = matches!(
        finetune::mlx_rs::Device::default().get_type()?,
        finetune::mlx_rs::DeviceType::Cpu
    );
    let options = LoadOptions {
        dequantize: on_cpu && !args.keep_quantized,
        ..Default::default()
    };
    let path = crate::models::fetch_if_hub_id(&args.model)?;
    let mut loaded = model::load(&path, &options)?;
    if let Some(adapter) = &args.adapter {
        let dir = crate::resolve_adapter(adapter)?;
        finetune::lora::load_adapters(&mut loaded.model, &dir)?;
        loaded.model.eval_parameters()?;
    }

    // llama-perplexity: common_tokenize(ctx, text, add_special = true,
    // parse_special = false).
    loaded.tokenizer.set_parse_special(false);
    let bos = loaded.tokenizer.text_bos();
    let mut tokens: Vec<u32> = bos.into_iter().collect();
    tokens.extend(loaded.tokenizer.encode(&text)?);

    let ctx = args.ctx;
    if tokens.len() < 2 * ctx {
        return Err(invalid(format!(
            "{}: the text gives {} tokens; perplexity with --ctx {ctx} needs at least {} \
             (2 × ctx, as llama-perplexity): give a longer text or a smaller --ctx",
            args.file.display(),
            tokens.len(),
            2 * ctx
        )));
    }
    let mut n_chunks = tokens.len() / ctx;
    if let Some(limit) = args.chunks {
        n_chunks = n_chunks.min(limit);
    }
    let first = ctx / 2;

    let mut nll_sum = 0.0f64;
    let mut scored = 0usize;
    let mut chunk = 0;
    while chunk < n_chunks {
        let rows = args.batch.min(n_chunks - chunk);
        let mut inputs: Vec<i32> = Vec::with_capacity(rows * (ctx - 1));
        let mut targets: Vec<i32> = Vec::with_capacity(rows * (ctx - 1));
        for row in 0..rows {
            let begin = (chunk + row) * ctx;
            let mut piece: Vec<i32> = tokens[begin..begin + ctx]
                .iter()
                .map(|&t| t as i32)
                .collect();
            if let Some(bos) = bos {
                piece[0] = bos as i32;
            }
            inputs.extend_from_slice(&piece[..ctx - 1]);
            targets.extend_from_slice(&piece[1..]);
        }
        let shape = [rows as i32, (ctx - 1) as i32];
        let inputs = Array::from_slice(&inputs, &shape);
        let targets = Array::from_slice(&targets, &shape);
        let nll = finetune::eval::sequence_nll(&mut loaded.model, &inputs, &targets, None)?
            .as_dtype(finetune::mlx_rs::Dtype::Float32)?;
        nll.eval()?;
        let values: &[f32] = nll.as_slice();
        for row in 0..rows {
            // The logits of positions first … ctx − 2 (targets first + 1 … ctx − 1).
            let row_values = &values[row * (ctx - 1) + first..(row + 1) * (ctx - 1)];
            nll_sum += row_values.iter().map(|&v| v as f64).sum::<f64>();
            scored += row_values.len();
        }
        chunk += rows;
        if !args.json {
            eprint!(
                "\r[{chunk}/{n_chunks}] perplexity so far {:.4}",
                (nll_sum / scored as f64).exp()
            );
        }
    }
    if !args.json {
        eprintln!();
    }
    let mean_nll = nll_sum / scored as f64;
    let report = PerplexityReport {
        model: args.model.display().to_string(),
        file: args.file.display().to_string(),
        adapter: args.adapter.as_ref().map(|a| a.display().to_string()),
        ctx,
        tokens: tokens.len(),
        chunks: n_chunks,
        scored_tokens: scored,
        add_bos: bos.is_some(),
        mean_nll,
        perplexity: mean_nll.exp(),
        seconds: start.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "perplexity {:.4} (mean NLL {:.5}) over {} tokens: {} chunks of {ctx}, second halves \
             scored, {} tokens in the text{}",
            report.perplexity,
            report.mean_nll,
            report.scored_tokens,
            report.chunks,
            report.tokens,
            if report.add_bos {
                ", BOS first in each chunk"
            } else {
                ""
            }
        );
    }
    Ok(())
}
