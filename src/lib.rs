//! FineTune's engine: fine-tune language models on your own machine with MLX.
//!
//! The engine never knows about a user interface: the `ft` command line and
//! the desktop app are its clients.

pub mod device;
pub mod error;
pub mod paths;

pub use error::{Error, Result};
pub use mlx_rs;
