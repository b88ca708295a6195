//! FineTune's own CPU kernels (kernels/ft_kernels.cpp): SwiGLU, causal
//! attention, a chunked linear cross-entropy, the LoRA projection, RMSNorm
//! and RoPE, as
//! MLX graph nodes with their own backward passes.
//!
//! Each function here uses our kernel when it applies (CPU device, float32,
//! the switch on) and MLX's own ops otherwise — on Metal and CUDA, for other
//! dtypes, or with `FINETUNE_CPU_KERNELS=off` / [`set_enabled`]`(false)` for
//! comparison. [`mlx_reference`] holds the MLX versions the tests hold ours to.

use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::{AtomicU8, Ordering};

use mlx_rs::error::Exception;
use mlx_rs::{Array, Dtype};
use mlx_sys::mlx_array;

extern "C" {
    fn ft_swiglu(out: *mut mlx_array, gate: mlx_array, up: mlx_array) -> c_int;
    fn ft_causal_attention(
        out: *mut mlx_array,
        q: mlx_array,
        k: mlx_array,
        v: mlx_array,
        segments: mlx_array,
        scale: f32,
    ) -> c_int;
    fn ft_linear_cross_entropy(
        out: *mut mlx_array,
        hidden: mlx_array,
        weight: mlx_array,
        targets: mlx_array,
        mask: mlx_array,
        with_grad: c_int,
    ) -> c_int;
    fn ft_lora_linear(
        out: *mut mlx_array,
        x: mlx_array,
        weight: mlx_array,
        lora_a: mlx_array,
        lora_b: mlx_array,
        scale: f32,
    ) -> c_int;
    fn ft_rms_norm(out: *mut mlx_array, x: mlx_array, weight: mlx_array, eps: f32) -> c_int;
    fn ft_rope(
        out: *mut mlx_array,
        x: mlx_array,
        inv_freq: mlx_array,
        dims: c_int,
        offset: c_int,
        scale: f32,
    ) -> c_int;
    fn ft_last_error() -> *const c_char;
    fn ft_set_threads(threads: c_int);
}

const UNSET: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
static SWITCH: AtomicU8 = AtomicU8::new(UNSET);

/// Turns our kernels on or off for this process (the default is on, unless
/// the environment says `FINETUNE_CPU_KERNELS=off`).
pub fn set_enabled(on: bool) {
    SWITCH.store(if on { ON } else { OFF }, Ordering::SeqCst);
}

/// Whether our kernels are switched on (they still apply only on the CPU).
pub fn enabled() -> bool {
    match SWITCH.load(Ordering::SeqCst) {
        ON => true,
        OFF => false,
        _ => {
            let off = std::env::var("FINETUNE_CPU_KERNELS")
                .is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "false" | "mlx"));
            SWITCH.store(if off { OFF } else { ON }, Ordering::SeqCst);
            !off
        }
    }
}

/// Threads the kernels use (0: one per core).
pub fn set_threads(threads: usize) {
    unsafe { ft_set_threads(threads as c_int) }
}

fn on_cpu() -> bool {
    matches!(
        mlx_rs::Device::default().get_type(),
        Ok(mlx_rs::DeviceType::Cpu)
    )
}

fn applies(arrays: &[&Array]) -> bool {
    arrays.iter().all(|a| apply_to(a.dtype()))
}

/// Whether our kernels run for arrays of `dtype` here and now (the switch
/// on, the default device the CPU, float32).
pub fn apply_to(dtype: Dtype) -> bool {
    dtype == Dtype::Float32 && enabled() && on_cpu()
}

/// Wraps a kernel call: the new array, or the kernel's error message.
fn call(f: impl FnOnce(*mut mlx_array) -> c_int) -> Result<Array, Exception> {
    unsafe {
        let mut out = mlx_sys::mlx_array_new();
        if f(&mut out) == 0 {
            Ok(Array::from_ptr(out))
        } else {
            mlx_sys::mlx_array_free(out);
            let message = CStr::from_ptr(ft_last_error())
                .to_string_lossy()
                .into_owned();
            Err(Exception::custom(message))
        }
    }
}

/// An optional input for the C side: the array, or an empty handle (null
/// context) that the kernels read as "absent".
fn optional(array: Option<&Array>) -> mlx_array {
    array.map_or_else(|| unsafe { mlx_sys::mlx_array_new() }, Array::as_ptr)
}

/// `silu(gate) * up`.
pub fn swiglu(gate: &Array, up: &Array) -> Result<Array, Exception> {
    if applies(&[gate, up]) && gate.shape() == up.shape() {
        ours::swiglu(gate, up)
    } else {
        mlx_reference::swiglu(gate, up)
    }
}

/// Causal self-attention of q (B, H, L, D) over k, v (B, KV, L, D); with
/// `segments` (B, L), only within each packed example.
pub fn causal_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    segments: Option<&Array>,
    scale: f32,
) -> Result<Array, Exception> {
    if applies(&[q, k, v]) {
        ours::causal_attention(q, k, v, segments, scale)
    } else {
        mlx_reference::causal_attention(q, k, v, segments, scale)
    }
}

/// Which rows a cross-entropy covers and whether it will be differentiated.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrossEntropyRows<'a> {
    /// (N) or any shape of N entries: rows where it is 0 give 0 (and our
    /// kernel skips them).
    pub mask: Option<&'a Array>,
    /// The loss will be differentiated w.r.t. the hidden states: our kernel
    /// then makes that gradient in the same pass over the vocabulary.
    pub differentiated: bool,
}

/// Cross-entropy of each row of `hidden @ weight.T` (hidden (N, E), weight
/// (V, E)) against `targets` (N) → (N).
pub fn linear_cross_entropy(
    hidden: &Array,
    weight: &Array,
    targets: &Array,
    rows: CrossEntropyRows<'_>,
) -> Result<Array, Exception> {
    if applies(&[hidden, weight]) {
        ours::linear_cross_entropy(hidden, weight, targets, rows)
    } else {
        mlx_reference::linear_cross_entropy(hidden, weight, targets, rows)
    }
}

/// A LoRA projection `x Wᵀ + scale · (x A) B`: x (..., in), weight (out,
/// in), a (in, r), b (r, out).
pub fn lora_linear(
    x: &Array,
    weight: &Array,
    a: &Array,
    b: &Array,
    scale: f32,
) -> Result<Array, Exception> {
    if applies(&[x, weight, a, b]) {
        ours::lora_linear(x, weight, a, b, scale)
    } else {
        mlx_reference::lora_linear(x, weight, a, b, scale)
    }
}

/// RMS normalisation over the last axis: `x / sqrt(mean(x²) + eps) · weight`.
pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array, Exception> {
    if applies(&[x, weight]) {
        ours::rms_norm(x, weight, eps)
    } else {
        mlx_reference::rms_norm(x, weight, eps)
    }
}

/// Rotary position embedding of x (B, H, L, D), the non-interleaved kind:
/// the first `dims` features turn by `(offset + l) · scale / period[i]`,
/// with periods `base^(2i / dims)` or the given `periods` (dims / 2).
#[derive(Debug, Clone, Copy)]
pub struct RopeSpec<'a> {
    pub dims: i32,
    pub base: f32,
    pub periods: Option<&'a Array>,
    pub scale: f32,
    pub offset: i32,
}

pub fn rope(x: &Array, spec: RopeSpec<'_>) -> Result<Array, Exception> {
    if applies(&[x]) && x.ndim() == 4 {
        ours::rope(x, spec)
    } else {
        mlx_reference::rope(x, spec)
    }
}

/// Our kernels, called whatever the device or switch (CPU, float32 only).
pub mod ours {
    use super::*;

    pub fn rope(x: &Array, spec: RopeSpec<'_>) -> Result<Array, Exception> {
        let inv_freq = match spec.periods {
            Some(periods) => periods.reciprocal()?,
            None => {
                // base^(-i / half) for i < half, as MLX computes it.
                let half = spec.dims / 2;
                mlx_rs::ops::arange::<_, f32>(0, half, None)?
                    .multiply(Array::from_f32(-spec.base.ln() / half as f32))?
                    .exp()?
            }
        };
        call(|out| unsafe {
            ft_rope(
                out,
                x.as_ptr(),
                inv_freq.as_ptr(),
                spec.dims,
                spec.offset,
                spec.scale,
            )
        })
    }

    pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array, Exception> {
        call(|out| unsafe { ft_rms_norm(out, x.as_ptr(), weight.as_ptr(), eps) })
    }

    pub fn lora_linear(
        x: &Array,
        weight: &Array,
        a: &Array,
        b: &Array,
        scale: f32,
    ) -> Result<Array, Exception> {
        call(|out| unsafe {
            ft_lora_linear(
                out,
                x.as_ptr(),
                weight.as_ptr(),
                a.as_ptr(),
                b.as_ptr(),
                scale,
            )
        })
    }

    pub fn swiglu(gate: &Array, up: &Array) -> Result<Array, Exception> {
        call(|out| unsafe { ft_swiglu(out, gate.as_ptr(), up.as_ptr()) })
    }

    pub fn causal_attention(
        q: &Array,
        k: &Array,
        v: &Array,
        segments: Option<&Array>,
        scale: f32,
    ) -> Result<Array, Exception> {
        let segments = optional(segments);
        call(|out| unsafe {
            ft_causal_attention(out, q.as_ptr(), k.as_ptr(), v.as_ptr(), segments, scale)
        })
    }

    pub fn linear_cross_entropy(
        hidden: &Array,
        weight: &Array,
        targets: &Array,
        rows: CrossEntropyRows<'_>,
    ) -> Result<Array, Exception> {
        let mask = optional(rows.mask);
        call(|out| unsafe {
            ft_linear_cross_entropy(
                out,
                hidden.as_ptr(),
                weight.as_ptr(),
                targets.as_ptr(),
                mask,
                c_int::from(rows.differentiated),
            )
        })
    }
}

/// The same computations with MLX's own ops.
pub mod mlx_reference {
    use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
    use mlx_rs::ops;

    use super::*;

    pub fn swiglu(gate: &Array, up: &Array) -> Result<Array, Exception> {
        // silu(gate)·up with plain ops (mlx-rs's `silu` is `compile`d).
        gate.multiply(ops::sigmoid(gate)?)?.multiply(up)
    }

    pub fn causal_attention(
        q: &Array,
        k: &Array,
        v: &Array,
        segments: Option<&Array>,
        scale: f32,
    ) -> Result<Array, Exception> {
        match segments {
            None => fast::scaled_dot_product_attention(
                q,
                k,
                v,
                scale,
                ScaledDotProductAttentionMask::Causal,
                None,
            ),
            Some(segments) => {
                let l = q.shape()[2];
                let same = segments.expand_dims(-1)?.eq(segments.expand_dims(-2)?)?;
                let causal = ops::tril(ops::ones::<bool>(&[l, l])?, None)?;
                let mask = same.logical_and(&causal)?.expand_dims(1)?;
                fast::scaled_dot_product_attention(
                    q,
                    k,
                    v,
                    scale,
                    ScaledDotProductAttentionMask::Array(&mask),
                    None,
                )
            }
        }
    }

    pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array, Exception> {
        fast::rms_norm(x, Some(weight), eps)
    }

    pub fn rope(x: &Array, spec: RopeSpec<'_>) -> Result<Array, Exception> {
        match spec.periods {
            Some(periods) => {
                fast::rope(x, spec.dims, false, None, spec.scale, spec.offset, periods)
            }
            None => fast::rope(
                x,
                spec.dims,
                false,
                spec.base,
                spec.scale,
                spec.offset,
                None,
            ),
        }
    }

    pub fn lora_linear(
        x: &Array,
        weight: &Array,
        a: &Array,
        b: &Array,
        scale: f32,
    ) -> Result<Array, Exception> {
        let update = x.matmul(a)?.multiply(Array::from_f32(scale))?.matmul(b)?;
        x.matmul(weight.t())?.add(update)
    }

    pub fn linear_cross_entropy(
        hidden: &Array,
        weight: &Array,
        targets: &Array,
        rows: CrossEntropyRows<'_>,
    ) -> Result<Array, Exception> {
        let logits = hidden.matmul(weight.t())?;
        let nll = crate::eval::token_nll(&logits, targets)?;
        match rows.mask {
            Some(mask) => nll.multiply(mask.reshape(nll.shape())?),
            None => Ok(nll),
        }
    }
}
