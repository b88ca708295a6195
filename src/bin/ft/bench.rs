//! `ft bench`: this machine's speed with FineTune alone — matmul, loading
//! and generating with the default model, and a few LoRA training steps on
//! the sample data. (`make bench` compares against mlx_lm and PyTorch.)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use finetune::generate::{generate, GenerateOptions};
use finetune::model::{self, LoadOptions};
use finetune::train::{train, TrainConfig, TrainControl, TrainEvent};

#[derive(Args)]
pub struct BenchArgs {
    /// Model (default: the bundled one).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training data (default: the sample dataset).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training steps to time (the first is not counted).
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Time FineTune's CPU kernels against MLX's own ops instead (forward,
    /// and forward + backward, at the shapes of `make bench`).
    #[arg(long)]
    pub kernels: bool,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.kernels {
        return crate::bench_kernels::run(args.steps.max(3), args.json);
    }
    let model_path = args.model.unwrap_or_else(finetune::paths::default_model);
    let model_path = crate::models::fetch_if_hub_id(&model_path)?;
    let data = args.data.unwrap_or_else(finetune::paths::sample_dataset);
    let steps = args.steps.max(2);
    if !args.json {
        eprintln!("measuring matmul, loading, generation, then {steps} training steps…");
    }
    let matmul =
        finetune::device::measure_matmul(1024, mlx_rs::Dtype::Float32, Duration::from_millis(400))?;

    let start = Instant::now();
    let mut loaded = model::load(
        &model_path,
        &LoadOptions {
            dequantize: true,
            ..Default::default()
        },
    )?;
    let load_seconds = start.elapsed().as_secs_f64();
    let prompt = loaded.tokenizer.encode("The history of Paris begins")?;
    let generation = generate(
        &mut loaded.model,
        &loaded.tokenizer,
        &prompt,
        &GenerateOptions {
            max_tokens: 48,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        },
        |_| {},
    )?;
    drop(loaded);

    let runs = tempdir()?;
    let config = TrainConfig {
        model: model_path.clone(),
        data,
        output: runs.join("adapters"),
        iters: Some(steps),
        batch_size: 4,
        max_length: 256,
        steps_per_report: 1,
        steps_per_eval: 0,
        val_batches: 1,
        ..Default::default()
    };
    let mut points = Vec::new();
    let mut observer = |e: &TrainEvent| {
        if let TrainEvent::Step {
            trained_tokens,
            elapsed_seconds,
            ..
        } = e
        {
            points.push((*trained_tokens, *elapsed_seconds));
        }
    };
    let summary = train(&config, &mut observer, &TrainControl::default())?;
    let _ = std::fs::remove_dir_all(&runs);
    // Steady state: from the end of the first step to the end of the last.
    let (t0, s0) = points[0];
    let (t1, s1) = *points.last().expect("steps ran");
    let train_tps = (t1 - t0) as f64 / (s1 - s0).max(1e-9);

    let figures = serde_json::json!({
        "matmul_gflops": matmul.gflops,
        "load_seconds": load_seconds,
        "generation_tokens_per_second": generation.tokens_per_second,
        "train_trained_tokens_per_second": train_tps,
        "train_peak_memory_bytes": summary.peak_memory_bytes,
        "model": model_path,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(());
    }
    println!("model               {}", model_path.display());
    println!("matmul f32 1024²    {:.1} GFLOP/s", matmul.gflops);
    println!("load (float32)      {load_seconds:.2} s");
    println!(
        "generation          {:.1} tokens/s (greedy, {} tokens)",
        generation.tokens_per_second, generation.generated_tokens
    );
    println!(
        "LoRA training       {train_tps:.1} trained tokens/s (rank 8, all layers, batch 4, ≤256 tokens, {} steps after the first)",
        steps - 1
    );
    println!(
        "peak memory (MLX)   {}",
        finetune::train::memory::gib(summary.peak_memory_bytes as u64)
    );
    Ok(())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ft-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
