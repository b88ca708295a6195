//! Keys and values of past positions, per layer, for incremental decoding.

use mlx_rs::Array;

#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Array, Array)>>,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| None).collect(),
        }
    }

    /// Positions already cached.
    pub fn offset(&self) -> i32 {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |(k, _)| k.shape()[2])
    }

    /// Layer `i`'s keys and values, (B, heads, L, head_dim) each.
    pub fn slot(&mut self, i: usize) -> &mut Option<(Array, Array)> {
        &mut self.layers[i]
    }
}

/// Causal attention of q over k and v, (B, heads, L, head_dim) each.
/// Without a cache (training, evaluation): over the whole input, within
/// each example of `segments` when rows are packed (FineTune's kernel on
/// the CPU). With one: this step's keys and values are appended to the
/// cached ones and attended over.
pub fn attend(
    q: &Array,
    k: Array,
    v: Array,
    slot: Option<&mut Option<(Array, Array)>>,
    segments: Option<&Array>,
    scale: f32,
) -> Result<Array, mlx_rs::error::Exception> {
    use mlx_rs::fast::{scaled_dot_product_attention, ScaledDotProductAttentionMask};
    match slot {
        None => crate::kernels::causal_attention(q, &k, &v, segments, scale),
        Some(slot) => {
            let (k, v) = extend(slot, k, v)?;
            let mask = (q.shape()[2] > 1).then_some(ScaledDotProductAttentionMask::Causal);
            scaled_dot_product_attention(q, &k, &v, scale, mask, None)
        }
    }
}

/// Appends this step's keys and values to the cached ones and returns the
/// full keys and values to attend over.
fn extend(
    slot: &mut Option<(Array, Array)>,
    k: Array,
    v: Array,
) -> Result<(Array, Array), mlx_rs::error::Exception> {
    let (k, v) = match slot.take() {
        Some((past_k, past_v)) => (
            mlx_rs::ops::concatenate(&[past_k, k], 2)?,
            mlx_rs::ops::concatenate(&[past_v, v], 2)?,
        ),
        None => (k, v),
    };
    *slot = Some((k.clone(), v.clone()));
    Ok((k, v))
}
