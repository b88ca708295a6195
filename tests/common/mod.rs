//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

#[allow(unused_imports)]
pub use finetune::fixtures::{write_chat_data, write_tokenizer, TinyModel};
use finetune::mlx_rs::Array;

/// The default model `make setup` fetched (tests that need it fail with a
/// pointer to setup when it is missing).
pub fn default_model() -> PathBuf {
    let path = finetune::paths::default_model();
    assert!(
        path.exists(),
        "{} is missing: run `make setup` first",
        path.display()
    );
    path
}

pub fn max_abs_diff(a: &Array, b: &Array) -> f32 {
    a.subtract(b)
        .unwrap()
        .abs()
        .unwrap()
        .max(None)
        .unwrap()
        .item_exact()
}
