//! `ft models list | pull | info | convert | quantize`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use finetune::hub::{self, DownloadEvent};
use finetune::model::{self, projection::Quantization, LoadOptions, LoadedModel};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// The bundled default model and every model in the Hugging Face cache.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a model from the Hugging Face Hub into its cache (resumes a
    /// partial download; HF_HOME / HF_HUB_CACHE pick the cache folder).
    Pull {
        /// A hub id such as HuggingFaceTB/SmolLM2-135M-Instruct.
        id: String,
    },
    /// Architecture, size, parameters and tokenizer of a model.
    Info {
        /// A .gguf file, a Hugging Face folder, or a hub id.
        model: PathBuf,
        /// Print the facts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a model as a Hugging Face safetensors folder (float32).
    Convert(ConvertArgs),
    /// Write a model quantized (mlx-lm's layout: packed weights, scales, biases).
    Quantize {
        /// A .gguf file, a Hugging Face folder, or a hub id.
        model: PathBuf,
        /// The new folder to write (must not exist).
        #[arg(long)]
        output: PathBuf,
        /// Bits per weight.
        #[arg(long, default_value_t = 4, value_parser = bits_parser())]
        bits: i32,
        /// Weights sharing one scale and offset.
        #[arg(long, default_value_t = 64)]
        group_size: i32,
    },
}

fn bits_parser() -> impl clap::builder::TypedValueParser<Value = i32> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["2", "3", "4", "6", "8"])
        .map(|s| s.parse::<i32>().expect("a listed value"))
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// A .gguf file, a Hugging Face folder (safetensors or .bin), or a hub id.
    pub model: PathBuf,
    /// The new folder (or, with `--to gguf`, file) to write; must not exist.
    #[arg(long)]
    pub output: PathBuf,
    /// What to write: a Hugging Face folder, or one GGUF file for llama.cpp,
    /// Ollama and LM Studio.
    #[arg(long, value_enum, default_value = "hf")]
    pub to: ConvertTo,
    /// The GGUF file type (with `--to gguf`): tensor types chosen per tensor
    /// as llama-quantize does.
    #[arg(long, default_value = "f16", ignore_case = true, value_parser = crate::export::quant_parser())]
    pub quant: finetune::gguf::mix::FileType,
    /// Largest safetensors shard, in MiB.
    #[arg(long, default_value_t = 5120)]
    pub shard_size_mb: usize,
    /// Skip the export check (loading what was written back and comparing
    /// it with the model on fixed conversations).
    #[arg(long)]
    pub no_check: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ConvertTo {
    /// A Hugging Face folder: config.json, safetensors, tokenizer.json.
    Hf,
    /// One GGUF file (llama.cpp's names and layouts, tokenizer and chat template inside).
    Gguf,
}

pub fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::List { json } => list(json),
        ModelsCommand::Pull { id } => {
            let dir = pull(&id)?;
            println!("{}", dir.display());
            Ok(())
        }
        ModelsCommand::Info { model, json } => info(&model, json),
        ModelsCommand::Convert(args) => convert(args),
        ModelsCommand::Quantize {
            model,
            output,
            bits,
            group_size,
        } => {
            let mut loaded = load_dense(&model)?;
            let q = Quantization { group_size, bits };
            finetune::export::write_quantized_folder(&mut loaded, &output, 5 << 30, q)?;
            eprintln!(
                "wrote {} ({bits}-bit, groups of {group_size})",
                output.display()
            );
            Ok(())
        }
    }
}

pub fn convert(args: ConvertArgs) -> anyhow::Result<()> {
    use finetune::export::check::{Exported, Subject};
    let mut loaded = load_dense(&args.model)?;
    let exported = match args.to {
        ConvertTo::Hf => {
            finetune::export::write_hf_folder(&mut loaded, &args.output, args.shard_size_mb << 20)?;
            eprintln!("wrote {}", args.output.display());
            Exported::Fused(args.output.clone())
        }
        ConvertTo::Gguf => {
            let name = finetune::export::model_label(&args.model);
            let report =
                finetune::export::gguf::write_gguf(&loaded, &args.output, args.quant, &name)?;
            crate::export::print_gguf_report(&report);
            Exported::Gguf(report.path, args.quant)
        }
    };
    let source = loaded.source.clone();
    drop(loaded);
    if args.no_check {
        return Ok(());
    }
    crate::export::check_and_report(&Subject::of_model(&source), &exported)
}

fn load_dense(spec: &Path) -> anyhow::Result<LoadedModel> {
    let path = fetch_if_hub_id(spec)?;
    let options = LoadOptions {
        dequantize: true,
        ..Default::default()
    };
    Ok(model::load(&path, &options)?)
}

/// A hub id becomes its cached folder (downloaded with a progress bar when
/// missing); anything else is returned as given.
pub fn fetch_if_hub_id(spec: &Path) -> anyhow::Result<PathBuf> {
    let text = spec.to_string_lossy();
    if hub::is_hub_id(&text) {
        pull(&text)
    } else {
        Ok(spec.to_path_buf())
    }
}

fn pull(id: &str) -> anyhow::Result<PathBuf> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let dir = hub::resolve(id, |event| match event {
        DownloadEvent::Started { file, bytes } => {
            bar.reset();
            bar.set_length(bytes);
            bar.set_message(file);
        }
        DownloadEvent::Progress { bytes } => bar.inc(bytes),
        DownloadEvent::Finished { file } => bar.println(format!("downloaded {file}")),
    })?;
    bar.finish_and_clear();
    Ok(dir)
}

fn folder_bytes(path: &Path) -> u64 {
    if path.is_file() {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                // Follow the hub cache's symlinks to their blobs.
                .map(|e| {
                    std::fs::metadata(e.path()).map_or(0, |m| {
                        if m.is_dir() {
                            folder_bytes(&e.path())
                        } else {
                            m.len()
                        }
                    })
                })
                .sum()
        })
        .unwrap_or(0)
}

fn list(as_json: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let default = finetune::paths::default_model();
    if default.exists() {
        rows.push(json!({
            "id": "default",
            "path": default,
            "bytes": folder_bytes(&default),
            "source": "bundled",
        }));
    }
    for (id, dir) in hub::cached_models() {
        rows.push(json!({
            "id": id,
            "path": dir,
            "bytes": folder_bytes(&dir),
            "source": "hugging face cache",
        }));
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no models yet: run `make setup` for the default one, or `ft models pull ID` (cache: {})",
            hub::cache_dir().display()
        );
    }
    for row in rows {
        println!(
            "{:<45} {:>9}  {}",
            row["id"].as_str().unwrap_or(""),
            format!("{:.1} MB", row["bytes"].as_u64().unwrap_or(0) as f64 / 1e6),
            row["path"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

fn info(spec: &Path, as_json: bool) -> anyhow::Result<()> {
    let path = fetch_if_hub_id(spec)?;
    // A GGUF file is described from its header first: a file FineTune
    // cannot train says so before gigabytes are read.
    let gguf = is_gguf(&path)
        .then(|| finetune::model::gguf::describe(&path))
        .transpose()?;
    if let Some(summary) = &gguf {
        if let Some(why) = &summary.unsupported {
            if as_json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "model": spec,
                        "path": path,
                        "gguf": summary,
                    }))?
                );
            } else {
                print_gguf_summary(summary);
            }
            anyhow::bail!("{why}");
        }
    }
    let loaded = model::load(&path, &LoadOptions::default())?;
    let m = &loaded.model;
    let quantized = m.quantization();
    let (packed, projections) = m.quantized_projections();
    let facts = json!({
        "model": spec,
        "path": path,
        "architecture": m.model_type(),
        "layers": m.num_layers(),
        "hidden_size": m.hidden_size(),
        "vocab_size": m.vocab_size(),
        "parameters": m.parameter_count(),
        "quantization": quantized.map(|q| json!({
            "bits": q.bits,
            "group_size": q.group_size,
            "quantized_projections": packed,
            "projections": projections,
        })),
        "bytes_on_disk": folder_bytes(&path),
        "tokenizer_tokens": loaded.tokenizer.vocab_size(),
        "chat_template": loaded.chat_template.is_some(),
        "lora_targets": m.lora_targets(),
        "gguf": gguf,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&facts)?);
        return Ok(());
    }
    println!("model          {}", spec.display());
    if let Some(summary) = &gguf {
        print_gguf_summary(summary);
    }
    println!("architecture   {}", m.model_type());
    println!("layers         {}", m.num_layers());
    println!("hidden size    {}", m.hidden_size());
    println!(
        "vocabulary     {} (tokenizer: {})",
        m.vocab_size(),
        loaded.tokenizer.vocab_size()
    );
    println!(
        "parameters     {} ({:.1} M)",
        m.parameter_count(),
        m.parameter_count() as f64 / 1e6
    );
    match quantized {
        Some(q) if packed < projections => println!(
            "weights        {packed} of {projections} projections {}-bit (groups of {}), the rest dense float32",
            q.bits, q.group_size
        ),
        Some(q) => println!("weights        {}-bit, groups of {}", q.bits, q.group_size),
        None => println!("weights        dense"),
    }
    println!("size on disk   {:.1} MB", folder_bytes(&path) as f64 / 1e6);
    println!(
        "chat template  {}",
        if loaded.chat_template.is_some() {
            "yes"
        } else {
            "no"
        }
    );
    println!("LoRA targets   {}", m.lora_targets().join(", "));
    Ok(())
}

fn is_gguf(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

fn print_gguf_summary(summary: &finetune::model::gguf::GgufSummary) {
    println!(
        "GGUF           architecture `{}`{}",
        summary.architecture,
        summary
            .name
            .as_deref()
            .map(|n| format!(", \"{n}\""))
            .unwrap_or_default()
    );
    let types: Vec<String> = summary
        .tensor_types
        .iter()
        .map(|(t, n)| format!("{n} × {t}"))
        .collect();
    println!("tensors        {} ({})", summary.tensors, types.join(", "));
    match &summary.unsupported {
        None => println!("trainable      yes, as it is"),
        Some(why) => println!("trainable      no: {why}"),
    }
}
