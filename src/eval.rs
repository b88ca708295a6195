//! Measuring a model on text: per-token negative log-likelihood and perplexity.

use mlx_rs::{error::Exception, Array};

use crate::error::Result;
use crate::model::Model;

/// Negative log-likelihood of each next token: `logits` (B, L, V) against
/// `targets` (B, L) → (B, L), computed as logsumexp − logit[target] so the
/// full log-softmax is never materialised.
pub fn token_nll(logits: &Array, targets: &Array) -> Result<Array, Exception> {
    let logits = logits.as_dtype(mlx_rs::Dtype::Float32)?;
    let lse = logits.logsumexp_axis(-1, false)?;
    let picked = logits
        .take_along_axis(targets.expand_dims(-1)?, -1)?
        .squeeze_axes(&[-1])?;
    lse.subtract(&picked)
}

/// Perplexity of `ids` under `model`: exp(mean NLL of tokens 2..n given
/// their prefix).
pub fn perplexity(model: &mut Model, ids: &[u32]) -> Result<f64> {
    if ids.len() < 2 {
        return Err(crate::Error::Invalid(
            "perplexity needs at least two tokens".into(),
        ));
    }
    let all: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    let n = all.len() as i32 - 1;
    let inputs = Array::from_slice(&all[..n as usize], &[1, n]);
    let targets = Array::from_slice(&all[1..], &[1, n]);
    let logits = model.forward(&inputs, None)?;
    let mean: f32 = token_nll(&logits, &targets)?.mean(None)?.item_exact();
    Ok((mean as f64).exp())
}
