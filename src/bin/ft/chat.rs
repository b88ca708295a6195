//! `ft chat`: talk to a model in the terminal, replies streamed as they are
//! generated. Reads one message per line from stdin (so it also works with a
//! pipe); `/reset` starts over, `/exit` or end of input quits.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Args;
use finetune::chat_template::Message;
use finetune::generate::GenerateOptions;
use finetune::model::{self, LoadOptions};

#[derive(Args)]
pub struct ChatArgs {
    /// A .gguf file, a Hugging Face model folder, or a hub id.
    pub model: PathBuf,
    /// LoRA adapters: a run id, a run folder, or an mlx-lm / PEFT adapter folder.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// A system message to start every conversation with.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 always picks the most likely token.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let path = crate::models::fetch_if_hub_id(&args.model)?;
    let on_cpu = matches!(
        finetune::mlx_rs::Device::default().get_type()?,
        finetune::mlx_rs::DeviceType::Cpu
    );
    let mut loaded = model::load(
        &path,
        &LoadOptions {
            dequantize: on_cpu,
            ..Default::default()
        },
    )?;
    if let Some(adapter) = &args.adapter {
        let dir = crate::resolve_adapter(adapter)?;
        finetune::lora::load_adapters(&mut loaded.model, &dir)?;
        loaded.model.eval_parameters()?;
    }
    // The format training uses by default: the model's own template, or
    // the built-in its vocabulary fits.
    let resolved =
        finetune::data::templates::resolve(None, loaded.chat_template.as_ref(), &loaded.tokenizer)?;
    for warning in &resolved.warnings {
        eprintln!("note: {warning}");
    }
    let template = &resolved.template;
    let fresh = || -> Vec<Message> {
        args.system
            .iter()
            .map(|s| Message::new("system", s))
            .collect()
    };
    let mut messages = fresh();
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        eprintln!(
            "chatting with {} — /reset to start over, /exit to quit",
            args.model.display()
        );
    }
    let stdin = std::io::stdin();
    let mut turn = 0u64;
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = fresh();
                eprintln!("(new conversation)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::new("user", line));
        let prompt = template.render(&messages, true)?;
        let ids = loaded.tokenizer.encode(&prompt)?;
        let options = GenerateOptions {
            max_tokens: args.max_tokens,
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed.wrapping_add(turn),
        };
        let result = crate::stream_to_stdout(&mut loaded.model, &loaded.tokenizer, &ids, &options)?;
        messages.push(Message::new("assistant", result.text.trim()));
        turn += 1;
    }
    Ok(())
}
