//! A linear layer whose weight is dense or MLX-quantized (4/8-bit affine,
//! as loaded from GGUF Q4_0/Q4_1/Q8_0 or made by `quantize`).

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
        }
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
            let dense = self.dense_weight()?;
            *self = Self::dense(dense, self.bias.value.take());
        }
        Ok(())
    }

    /// Quantizes a dense weight (affine, per group along the input axis).
    pub fn quantize(&mut self, quantization: Quantization) -> Result<(), Exception> {
        if self.quantization.is_none() {
            let (w, scales, biases) =
                ops::quantize(&*self.weight, quantization.group_size, quantization.bits)?;
            *self = Self::quantized(w, scales, biases, self.bias.value.take(), quantization);
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
        match &*self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    fn training_mode(&mut self, _mode: bool) {}
}
