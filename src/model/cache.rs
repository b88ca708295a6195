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

/// Appends this step's keys and values to the cached ones (when caching)
/// and returns the full keys and values to attend over.
pub fn extend(
    slot: Option<&mut Option<(Array, Array)>>,
    k: Array,
    v: Array,
) -> Result<(Array, Array), mlx_rs::error::Exception> {
    let Some(slot) = slot else {
        return Ok((k, v));
    };
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
