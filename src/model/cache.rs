//! Keys and values of past positions, per layer, for incremental decoding,
//! and the attention over them.

use mlx_rs::error::Exception;
use mlx_rs::fast::{scaled_dot_product_attention, ScaledDotProductAttentionMask};
use mlx_rs::{ops, Array};

#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Array, Array)>>,
    /// Positions seen so far (a sliding-window layer keeps fewer keys).
    offset: i32,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| None).collect(),
            offset: 0,
        }
    }

    /// Starts a forward pass over `new_tokens` positions: returns the
    /// position of the first of them.
    pub fn begin(&mut self, new_tokens: i32) -> i32 {
        let start = self.offset;
        self.offset += new_tokens;
        start
    }

    /// Layer `i`'s keys and values, (B, heads, L, head_dim) each.
    pub fn slot(&mut self, i: usize) -> &mut Option<(Array, Array)> {
        &mut self.layers[i]
    }
}

/// How one layer attends, besides causally.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttentionKind {
    /// Keys a query sees, itself included (sliding-window layers).
    pub window: Option<i32>,
    /// Gemma 2: scores become `cap · tanh(score / cap)` before the softmax.
    pub softcap: Option<f32>,
}

/// Causal attention of q over k and v, (B, heads, L, head_dim) each (k and
/// v may have fewer heads: grouped-query attention).
/// Without a cache (training, evaluation): over the whole input, within
/// each example of `segments` when rows are packed (FineTune's kernel on
/// the CPU when no window or soft-cap is asked). With one: this step's keys
/// and values are appended to the cached ones and attended over; a
/// sliding-window layer keeps only the keys a later query can still see.
pub fn attend(
    q: &Array,
    k: Array,
    v: Array,
    slot: Option<&mut Option<(Array, Array)>>,
    segments: Option<&Array>,
    scale: f32,
    kind: AttentionKind,
) -> Result<Array, Exception> {
    // A window at least as long as the keys changes nothing: the plain
    // causal paths (our kernel) serve it.
    let window_bites = |keys: i32| kind.window.filter(|&w| w < keys);
    match slot {
        None => {
            let window = window_bites(k.shape()[2]);
            if window.is_none() && kind.softcap.is_none() {
                return crate::kernels::causal_attention(q, &k, &v, segments, scale);
            }
            let mask = attention_mask(q.shape()[2], k.shape()[2], window, segments)?;
            masked_attention(q, &k, &v, scale, &mask, kind.softcap)
        }
        Some(slot) => {
            let (k, v) = extend(slot, k, v, kind.window)?;
            let (lq, lk) = (q.shape()[2], k.shape()[2]);
            let window = window_bites(lk);
            if window.is_none() && kind.softcap.is_none() {
                let mask = (lq > 1).then_some(ScaledDotProductAttentionMask::Causal);
                return scaled_dot_product_attention(q, &k, &v, scale, mask, None);
            }
            let mask = attention_mask(lq, lk, window, None)?;
            masked_attention(q, &k, &v, scale, &mask, kind.softcap)
        }
    }
}

/// Which keys each query may see, (Lq, Lk) or (B, 1, Lq, Lk) with
/// segments: the keys end where the queries end (a cache holds the earlier
/// ones), a key is visible when it is not later than the query, within
/// `window` positions of it (the query itself counts), and in its example.
fn attention_mask(
    lq: i32,
    lk: i32,
    window: Option<i32>,
    segments: Option<&Array>,
) -> Result<Array, Exception> {
    let q_pos = ops::arange::<_, i32>(lk - lq, lk, None)?.expand_dims(-1)?;
    let k_pos = ops::arange::<_, i32>(0, lk, None)?.expand_dims(0)?;
    let mut mask = k_pos.le(&q_pos)?;
    if let Some(w) = window {
        let near = q_pos.subtract(&k_pos)?.lt(Array::from_int(w))?;
        mask = mask.logical_and(&near)?;
    }
    if let Some(segments) = segments {
        let same = segments.expand_dims(-1)?.eq(segments.expand_dims(-2)?)?;
        mask = same.logical_and(&mask)?.expand_dims(1)?;
    }
    Ok(mask)
}

/// Attention under a boolean mask, soft-capping the scores when asked
/// (MLX's fused attention has no soft-cap, so that case is spelled out).
fn masked_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: &Array,
    softcap: Option<f32>,
) -> Result<Array, Exception> {
    let Some(cap) = softcap else {
        return scaled_dot_product_attention(
            q,
            k,
            v,
            scale,
            ScaledDotProductAttentionMask::Array(mask),
            None,
        );
    };
    let (b, heads, lq, d) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let kv_heads = k.shape()[1];
    let groups = heads / kv_heads;
    // (B, kv, groups, Lq, D) against (B, kv, 1, Lk, D): no repeated keys.
    let q = q
        .multiply(Array::from_f32(scale))?
        .reshape(&[b, kv_heads, groups, lq, d])?;
    let k = k.expand_dims(2)?;
    let v = v.expand_dims(2)?;
    let scores = q.matmul(k.swap_axes(-1, -2)?)?;
    let cap = Array::from_f32(cap);
    let scores = ops::tanh(scores.divide(&cap)?)?.multiply(&cap)?;
    let mask = if mask.ndim() == 4 {
        mask.expand_dims(2)?
    } else {
        mask.clone()
    };
    let neg = Array::from_f32(f32::NEG_INFINITY);
    let scores = ops::select(&mask, &scores, &neg)?;
    let weights = ops::softmax_axis(&scores, -1, None)?;
    weights.matmul(&v)?.reshape(&[b, heads, lq, d])
}

/// Appends this step's keys and values to the cached ones and returns the
/// full keys and values to attend over; a window layer keeps the last
/// `window` of them for later steps.
fn extend(
    slot: &mut Option<(Array, Array)>,
    k: Array,
    v: Array,
    window: Option<i32>,
) -> Result<(Array, Array), Exception> {
    let (k, v) = match slot.take() {
        Some((past_k, past_v)) => (
            ops::concatenate(&[past_k, k], 2)?,
            ops::concatenate(&[past_v, v], 2)?,
        ),
        None => (k, v),
    };
    let kept = |a: &Array| -> Result<Array, Exception> {
        use mlx_rs::ops::indexing::IndexOp;
        match window {
            Some(w) if a.shape()[2] > w => Ok(a.index((.., .., (a.shape()[2] - w).., ..))),
            _ => Ok(a.clone()),
        }
    };
    *slot = Some((kept(&k)?, kept(&v)?));
    Ok((k, v))
}
