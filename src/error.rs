//! The engine's one error type: each variant says what failed in words a
//! user can act on.

use std::path::PathBuf;

/// Errors from the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An MLX operation failed.
    #[error("MLX: {0}")]
    Mlx(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The input is wrong: a bad file, record or setting.
    #[error("{0}")]
    Invalid(String),
}

impl From<mlx_rs::error::Exception> for Error {
    fn from(e: mlx_rs::error::Exception) -> Self {
        Error::Mlx(e.to_string())
    }
}

/// Shorthand for results of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
