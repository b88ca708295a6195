//! A linear layer whose weight is dense or MLX-quantized (4/8-bit affine,
//! as loaded from GGUF Q4_0/Q4_1/Q8_0 or made by `quantize`), with an
//! optional low-rank adapter (LoRA) on top.
//!
//! The adapter's parameters are named `lora_a` (in, r) and `lora_b` (r, out)
//! like mlx-lm's, so the flattened names of a model's trainable parameters
//! are already mlx-lm adapter keys.

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

    /// Whether an adapter is attached.
    pub fn has_lora(&self) -> bool {
        self.lora_a.is_some() && self.lora_b.is_some()
    }

    /// Folds the adapter into a dense weight: W + scale·(A·B)ᵀ.
    pub fn fuse_lora(&mut self) -> Result<(), Exception> {
        if let (Some(a), Some(b)) = (self.lora_a.value.take(), self.lora_b.value.take()) {
            let delta = a
                .matmul(&b)?
                .t()
                .multiply(Array::from_f32(self.lora_scale))?;
            let weight = self.dense_weight()?;
            let fused = weight.add(delta.as_dtype(weight.dtype())?)?;
            let bias = self.bias.value.take();
            *self = Self::dense(fused, bias);
        }
        Ok(())
    }

    /// The weight as a dense (out, in) matrix.
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
        let y = match (self.quantization, &*self.scales) {
            (Some(q), Some(scales)) => ops::quantized_matmul(
                x,
                &*self.weight,
                scales,
                self.biases.as_ref(),
                true,
                q.group_size,
                q.bits,
            )?,
            _ => x.matmul(self.weight.t())?,
        };
        let y = match &*self.bias {
            Some(b) => y.add(b)?,
            None => y,
        };
        match (&*self.lora_a, &*self.lora_b) {
            (Some(a), Some(b)) => {
                let update = x.matmul(a)?.matmul(b)?;
                y.add(update.multiply(Array::from_f32(self.lora_scale))?)
            }
            _ => Ok(y),
        }
    }

    fn training_mode(&mut self, _mode: bool) {}
}
