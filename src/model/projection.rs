//! A linear layer whose weight is dense or MLX-quantized (4/8-bit affine,
//! as loaded from GGUF Q4_0/Q4_1/Q8_0 or made by `quantize`), with an
//! optional low-rank adapter (LoRA) on top.
//!
//! The adapter's parameters are named `lora_a` (in, r) and `lora_b` (r, out)
//! like mlx-lm's, so the flattened names of a model's trainable parameters
//! are already mlx-lm adapter keys.

use crate::kernels;
use mlx_rs::{
    error::Exception,
    macros::ModuleParameters,
    module::{Module, Param},
    ops, Array,
};

/// How a quantized weight is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantization {
    pub group_size: i32,
    pub bits: i32,
}

/// `y = x Wᵀ + b`, with `W` of shape (out, in) — or packed (out, in·bits/32)
/// uint32 with per-group `scales` and `biases` when quantized.
#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct Projection {
    #[param]
    pub weight: Param<Array>,
    #[param]
    pub bias: Param<Option<Array>>,
    #[param]
    pub scales: Param<Option<Array>>,
    #[param]
    pub biases: Param<Option<Array>>,
    pub quantization: Option<Quantization>,
    /// LoRA down-projection (in, r); absent without an adapter.
    #[param]
    pub lora_a: Param<Option<Array>>,
    /// LoRA up-projection (r, out), zero at the start of training.
    #[param]
    pub lora_b: Param<Option<Array>>,
    /// The adapter's output multiplier: alpha / rank.
    pub lora_scale: f32,
    /// DoRA's learned magnitude per output feature (out,); absent for
    /// plain LoRA. Named `m` as in mlx-lm's DoRA adapters.
    #[param]
    pub m: Param<Option<Array>>,
    /// Dropout on the adapter's input while training.
    pub lora_dropout: f32,
    /// Training mode (dropout on); evaluation and generation leave it off.
    pub training: bool,
    /// The adapter left out of the forward pass: the base model, as the
    /// reference of preference training (one copy of the weights).
    pub adapter_off: bool,
}

impl Projection {
    /// A dense layer.
    pub fn dense(weight: Array, bias: Option<Array>) -> Self {
        Self {
            weight: Param::new(weight),
            bias: Param::new(bias),
            scales: Param::new(None),
            biases: Param::new(None),
            quantization: None,
            lora_a: Param::new(None),
            lora_b: Param::new(None),
            lora_scale: 0.0,
            m: Param::new(None),
            lora_dropout: 0.0,
            training: false,
            adapter_off: false,
        }
    }

    /// A layer over an already-quantized weight.
    pub fn quantized(
        weight: Array,
        scales: Array,
        biases: Array,
        bias: Option<Array>,
        quantization: Quantization,
    ) -> Self {
        Self {
            weight: Param::new(weight),
            bias: Param::new(bias),
            scales: Param::new(Some(scales)),
            biases: Param::new(Some(biases)),
            quantization: Some(quantization),
            lora_a: Param::new(None),
            lora_b: Param::new(None),
            lora_scale: 0.0,
            m: Param::new(None),
            lora_dropout: 0.0,
            training: false,
            adapter_off: false,
        }
    }

    /// Adds a LoRA adapter of `rank`: A uniform in ±1/√in, B zero, so the
    /// layer computes exactly what it did before until B is trained.
    pub fn add_lora(&mut self, rank: i32, scale: f32) -> Result<(), Exception> {
        let input = self.input_dims();
        let bound = 1.0 / (input as f32).sqrt();
        let a = mlx_rs::random::uniform::<f32, f32>(-bound, bound, &[input, rank], None)?;
        let b = mlx_rs::ops::zeros::<f32>(&[rank, self.output_dims()])?;
        self.lora_a = Param::new(Some(a));
        self.lora_b = Param::new(Some(b));
        self.lora_scale = scale;
        Ok(())
    }

    /// Turns a LoRA adapter into DoRA: a magnitude per output feature,
    /// starting at the weight's row norms so the layer is unchanged.
    pub fn add_dora(&mut self) -> Result<(), Exception> {
        let w = self.dense_weight()?.as_dtype(mlx_rs::Dtype::Float32)?;
        self.m = Param::new(Some(row_norms(&w)?));
        Ok(())
    }

    /// Whether an adapter is attached.
    pub fn has_lora(&self) -> bool {
        self.lora_a.is_some() && self.lora_b.is_some()
    }

    /// Folds the adapter into a dense weight: W + scale·(A·B)ᵀ, rescaled
    /// row by row to the magnitudes `m` for DoRA.
    pub fn fuse_lora(&mut self) -> Result<(), Exception> {
        if let (Some(a), Some(b)) = (self.lora_a.value.take(), self.lora_b.value.take()) {
            let delta = a
                .matmul(&b)?
                .t()
                .multiply(Array::from_f32(self.lora_scale))?;
            let weight = self.dense_weight()?;
            let mut fused = weight.add(delta.as_dtype(weight.dtype())?)?;
            if let Some(m) = self.m.value.take() {
                let factor = m.divide(row_norms(&fused)?)?.expand_dims(-1)?;
                fused = fused.multiply(factor.as_dtype(weight.dtype())?)?;
            }
            let bias = self.bias.value.take();
            *self = Self::dense(fused, bias);
        }
        Ok(())
    }

    /// The weight as a dense (out, in) matrix.
    /// A plain dense matrix: not quantized, no bias, no adapter.
    pub fn is_plain(&self) -> bool {
        self.quantization.is_none()
            && self.bias.is_none()
            && self.lora_a.is_none()
            && self.m.is_none()
    }

    pub fn dense_weight(&self) -> Result<Array, Exception> {
        match (self.quantization, &*self.scales, &*self.biases) {
            (Some(q), Some(scales), biases) => {
                ops::dequantize(&*self.weight, scales, biases.as_ref(), q.group_size, q.bits)
            }
            _ => Ok(self.weight.value.clone()),
        }
    }

    /// Replaces a quantized weight by its dense equivalent.
    pub fn dequantize(&mut self) -> Result<(), Exception> {
        if self.quantization.is_some() {
            self.weight = Param::new(self.dense_weight()?);
            self.scales = Param::new(None);
            self.biases = Param::new(None);
            self.quantization = None;
        }
        Ok(())
    }

    /// Quantizes a dense weight (affine, per group along the input axis).
    pub fn quantize(&mut self, quantization: Quantization) -> Result<(), Exception> {
        if self.quantization.is_none() {
            let (w, scales, biases) =
                ops::quantize(&*self.weight, quantization.group_size, quantization.bits)?;
            self.weight = Param::new(w);
            self.scales = Param::new(Some(scales));
            self.biases = Param::new(Some(biases));
            self.quantization = Some(quantization);
        }
        Ok(())
    }

    /// Input features.
    pub fn input_dims(&self) -> i32 {
        let packed = self.weight.shape()[1];
        match self.quantization {
            Some(q) => packed * 32 / q.bits,
            None => packed,
        }
    }

    /// Output features.
    pub fn output_dims(&self) -> i32 {
        self.weight.shape()[0]
    }
}

impl Module<&Array> for Projection {
    type Error = Exception;
    type Output = Array;

    fn forward(&mut self, x: &Array) -> Result<Array, Exception> {
        // Plain LoRA over a dense weight, without dropout: one fused node
        // (our CPU kernel where it applies, MLX's ops otherwise).
        if self.adapter_off {
            return self.base_forward(x);
        }
        if let (Some(a), Some(b), None, None, None) = (
            &*self.lora_a,
            &*self.lora_b,
            self.quantization,
            &*self.m,
            &*self.bias,
        ) {
            let dropout = self.training && self.lora_dropout > 0.0;
            if !dropout && kernels::apply_to(x.dtype()) && self.weight.dtype() == x.dtype() {
                return kernels::lora_linear(x, &self.weight, a, b, self.lora_scale);
            }
        }
        let y = self.base_matmul(x)?;
        let y = match (&*self.lora_a, &*self.lora_b) {
            (Some(a), Some(b)) => {
                let scale = Array::from_f32(self.lora_scale);
                let x_in = if self.training && self.lora_dropout > 0.0 {
                    let keep = 1.0 - self.lora_dropout;
                    let mask = mlx_rs::random::bernoulli(&Array::from_f32(keep), x.shape(), None)?;
                    x.multiply(mask.as_dtype(x.dtype())?)?
                        .divide(Array::from_f32(keep))?
                } else {
                    x.clone()
                };
                // Scaled in rank space (batch × r), not on the batch × out
                // update: the same product, a much smaller multiply.
                let update = x_in.matmul(a)?.multiply(&scale)?.matmul(b)?;
                match &*self.m {
                    // Over a bfloat16/float16 base, the update joins the
                    // output in the output's dtype (as mlx-lm and PEFT do):
                    // promoting the whole output to float32 and back cost
                    // ~15 % of a step on a GPU.
                    None if y.dtype() != update.dtype() && y.dtype().is_float() => {
                        y.add(update.as_dtype(y.dtype())?)?
                    }
                    None => y.add(update)?,
                    Some(m) => {
                        // DoRA: rescale each output feature to its magnitude,
                        // the norm of the adapted weight held constant (as
                        // PEFT and mlx-lm do) so gradients stay cheap.
                        let delta = a.matmul(b)?.t().multiply(&scale)?;
                        let adapted = self.dense_weight()?.add(delta)?;
                        let norm = mlx_rs::stop_gradient(row_norms(&adapted)?)?;
                        let factor = m.divide(&norm)?;
                        // With dropout, the base path keeps the clean input.
                        let base_dropped = if self.training && self.lora_dropout > 0.0 {
                            x_in.matmul(self.dense_weight()?.t())?
                        } else {
                            y.clone()
                        };
                        let scaled = base_dropped.add(update)?.multiply(&factor)?;
                        y.subtract(&base_dropped)?.add(scaled)?
                    }
                }
            }
            _ => y,
        };
        self.finish(x, y)
    }

    fn training_mode(&mut self, _mode: bool) {}
}

impl Projection {
    /// x · Wᵀ over the dense or quantized weight, without bias or adapter.
    fn base_matmul(&self, x: &Array) -> Result<Array, Exception> {
        match (self.quantization, &*self.scales) {
            (Some(q), Some(scales)) => ops::quantized_matmul(
                x,
                &*self.weight,
                scales,
                self.biases.as_ref(),
                true,
                q.group_size,
                q.bits,
            ),
            _ => x.matmul(self.weight.t()),
        }
    }

    /// The layer without its adapter.
    fn base_forward(&self, x: &Array) -> Result<Array, Exception> {
        let y = self.base_matmul(x)?;
        self.finish(x, y)
    }

    /// Adds the bias and gives the output the input's dtype.
    fn finish(&self, x: &Array, y: Array) -> Result<Array, Exception> {
        let y = match &*self.bias {
            Some(b) => y.add(b)?,
            None => y,
        };
        // Mixed precision: float32 adapters (or trained weights) over a
        // bfloat16 base promote the result; the next layer gets the input's
        // dtype back, as in mlx-lm.
        if y.dtype() != x.dtype() && x.dtype().is_float() {
            y.as_dtype(x.dtype())
        } else {
            Ok(y)
        }
    }
}

/// L2 norm of each row of a matrix: (out, in) → (out,).
fn row_norms(w: &Array) -> Result<Array, Exception> {
    w.square()?.sum_axis(-1, None)?.sqrt()
}
