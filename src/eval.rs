//! Measuring a model on text: per-token negative log-likelihood and perplexity.

use mlx_rs::{error::Exception, Array};

use crate::error::Result;
use crate::kernels::{self, CrossEntropyRows};
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

/// Negative log-likelihood of each next token (B, L) of `inputs` (B, L)
/// against `targets` (B, L); `segments` as in [`Model::hidden_states`].
/// With a plain head the chunked cross-entropy never holds the whole
/// batch × length × vocabulary logits (on the CPU: our kernel).
pub fn sequence_nll(
    model: &mut Model,
    inputs: &Array,
    targets: &Array,
    segments: Option<&Array>,
) -> Result<Array, Exception> {
    let h = model.hidden_states(inputs, segments)?;
    nll_from_hidden(model, &h, targets, CrossEntropyRows::default())
}

/// Negative log-likelihood of `targets` (B, L) from the final normed hidden
/// states `h` (B, L, hidden): the head and the cross-entropy. Tokens whose
/// `rows.mask` is 0 may be skipped (their value is then 0): the caller
/// masks them anyway.
pub fn nll_from_hidden(
    model: &mut Model,
    h: &Array,
    targets: &Array,
    rows: CrossEntropyRows<'_>,
) -> Result<Array, Exception> {
    let head = model.head();
    if head.is_plain() && model.logits_are_plain_head() {
        let (b, l, e) = (h.shape()[0], h.shape()[1], h.shape()[2]);
        let nll = kernels::linear_cross_entropy(
            &h.reshape(&[b * l, e])?,
            &head.weight,
            &targets.reshape(&[b * l])?,
            rows,
        )?;
        nll.reshape(&[b, l])
    } else {
        let logits = model.logits_from_hidden(h)?;
        token_nll(&logits, targets)
    }
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
    let mean: f32 = sequence_nll(model, &inputs, &targets, None)?
        .mean(None)?
        .item_exact();
    Ok((mean as f64).exp())
}
