//! FineTune's engine: fine-tune language models on your own machine with MLX.
//!
//! The engine never knows about a user interface: the `ft` command line and
//! the desktop app are its clients.

pub mod blas;
pub mod chat_template;
pub mod data;
pub mod device;
pub mod distributed;
pub mod error;
pub mod eval;
pub mod export;
pub mod files;
pub mod fixtures;
pub mod generate;
pub mod gguf;
pub mod hub;
pub mod kernels;
pub mod lora;
pub mod model;
pub mod paths;
pub mod peft;
pub mod report;
pub mod runs;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};
pub use mlx_rs;
