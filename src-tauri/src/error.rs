//! Errors as the UI receives them: `{kind, message}`.

use serde::Serialize;

/// An error returned by a command.
#[derive(Debug, thiserror::Error, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum CommandError {
    /// The engine failed.
    #[error("{0}")]
    Engine(String),
    /// Work on a background thread died.
    #[error("{0}")]
    Background(String),
    /// The request conflicts with what is running (or not running).
    #[error("{0}")]
    Busy(String),
}

impl From<finetune::Error> for CommandError {
    fn from(e: finetune::Error) -> Self {
        CommandError::Engine(e.to_string())
    }
}
