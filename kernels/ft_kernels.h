/* FineTune's own MLX CPU primitives, reached from Rust (src/kernels.rs).
 *
 * Each function builds a node of MLX's lazy graph, like any MLX op: nothing
 * runs until the result is evaluated, and `grad` differentiates through it
 * (each primitive has its own backward primitive). All take float32 arrays
 * and run on the CPU stream. They return 0, or 1 with the reason in
 * `ft_last_error()`.
 */
#ifndef FT_KERNELS_H
#define FT_KERNELS_H

#include "mlx/c/array.h"

#ifdef __cplusplus
extern "C" {
#endif

/* silu(gate) * up, element-wise; both of the same shape. */
int ft_swiglu(mlx_array* out, mlx_array gate, mlx_array up);

/* Causal attention: q (B, H, L, D), k and v (B, KV, L, D) with H a multiple
 * of KV (grouped queries). `segments` (B, L) int32 keeps attention inside
 * each packed example (pass an empty array for plain causal attention).
 * Never stores more than a block of 64 query rows' scores per thread. */
int ft_causal_attention(
    mlx_array* out,
    mlx_array q,
    mlx_array k,
    mlx_array v,
    mlx_array segments,
    float scale);

/* Per-row cross-entropy of the logits `hidden @ weight.T` against `targets`:
 * hidden (N, E), weight (V, E), targets (N) int32 → (N). The logits are
 * made a block of columns at a time and never kept whole. Rows whose
 * `mask` (N, optional: pass an empty array) is 0 are skipped and give 0.
 * With `with_grad` the forward pass also makes the gradient w.r.t. hidden,
 * so that differentiating costs no second pass over the vocabulary (use it
 * when the result will be differentiated). */
int ft_linear_cross_entropy(
    mlx_array* out,
    mlx_array hidden,
    mlx_array weight,
    mlx_array targets,
    mlx_array mask,
    int with_grad);

/* A LoRA projection, x Wᵀ + scale · (x A) B: x (..., in), weight (out, in),
 * lora_a (in, r), lora_b (r, out). The adapter's product is added into the
 * base product by the BLAS; gradients for x, A and B come from one backward
 * primitive of matrix products only. */
int ft_lora_linear(
    mlx_array* out,
    mlx_array x,
    mlx_array weight,
    mlx_array lora_a,
    mlx_array lora_b,
    float scale);

/* RMS normalisation over the last axis, x / sqrt(mean(x²) + eps) · weight:
 * x (..., D), weight (D). */
int ft_rms_norm(mlx_array* out, mlx_array x, mlx_array weight, float eps);

/* Rotary position embedding (the non-interleaved kind, as Llama uses): x
 * (B, H, L, D) — a transposed view is read in place — turned by
 * (offset + l) · scale · inv_freq[i] per pair (i, i + dims/2); features
 * past `dims` pass through. Returns a contiguous (B, H, L, D). */
int ft_rope(mlx_array* out, mlx_array x, mlx_array inv_freq, int dims, int offset, float scale);

/* The message of the last failure on this thread. */
const char* ft_last_error(void);

/* Threads the kernels use (default: the machine's cores). */
void ft_set_threads(int threads);

#ifdef __cplusplus
}
#endif

#endif
