//! Chat from the window: the base model or a run's fine-tuned one answers a
//! conversation, each new piece of text streamed over a channel.

use std::path::PathBuf;

use finetune::chat_template::Message;
use finetune::generate::{generate, GenerateOptions};
use finetune::model::{self, LoadOptions};
use finetune::runs::{runs_dir, Run};
use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;

use crate::error::CommandError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The base model (None: the bundled one); ignored when `run` is given.
    pub model: Option<PathBuf>,
    /// A run whose base model and adapters answer.
    pub run: Option<String>,
    pub messages: Vec<Message>,
    pub max_tokens: usize,
    pub temperature: f32,
}

/// Generates the assistant's reply; returns it whole when done.
#[tauri::command]
pub async fn chat(request: ChatRequest, on_piece: Channel<String>) -> Result<String, CommandError> {
    tauri::async_runtime::spawn_blocking(move || -> finetune::Result<String> {
        let (model_path, adapters) = match &request.run {
            Some(id) => {
                let run = Run::open(&runs_dir(), id)?;
                (run.read_config()?.model, Some(run.adapters_dir()))
            }
            None => (
                request
                    .model
                    .clone()
                    .unwrap_or_else(finetune::paths::default_model),
                None,
            ),
        };
        let mut loaded = model::load(
            &model_path,
            &LoadOptions {
                dequantize: true,
                ..Default::default()
            },
        )?;
        if let Some(dir) = adapters {
            finetune::lora::load_adapters(&mut loaded.model, &dir)?;
            loaded.model.eval_parameters()?;
        }
        // The format training uses by default: the model's own template,
        // or the built-in its vocabulary fits.
        let template = finetune::data::templates::resolve(
            None,
            loaded.chat_template.as_ref(),
            &loaded.tokenizer,
        )?
        .template;
        let prompt = template.render(&request.messages, true)?;
        let ids = loaded.tokenizer.encode(&prompt)?;
        let options = GenerateOptions {
            max_tokens: request.max_tokens.clamp(1, 2048),
            temperature: request.temperature,
            top_p: 0.9,
            seed: 0,
        };
        let result = generate(
            &mut loaded.model,
            &loaded.tokenizer,
            &ids,
            &options,
            |piece| {
                let _ = on_piece.send(piece.to_string());
            },
        )?;
        Ok(result.text)
    })
    .await
    .map_err(|e| CommandError::Background(e.to_string()))?
    .map_err(CommandError::from)
}
