//! GPT-2 (and its fine-tunes such as DialoGPT): LayerNorm, learned position
//! embeddings, one fused q/k/v projection, GELU MLP, head tied to the token
//! embeddings. Parameter names follow Hugging Face
//! (`transformer.h.N.attn.c_attn…`). Hugging Face stores these projections
//! as `Conv1D` weights of shape (in, out); they are transposed on load so
//! every projection here is an ordinary (out, in) [`Projection`].

use mlx_rs::{
    error::Exception,
    fast,
    macros::ModuleParameters,
    module::{Module, Param},
    ops, Array,
};
use serde::{Deserialize, Serialize};

use super::cache::{self, KvCache};
use super::projection::Projection;
use super::weights::Weights;
use crate::error::{Error, Result};

/// GPT-2's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub model_type: String,
    pub vocab_size: i32,
    pub n_positions: i32,
    pub n_embd: i32,
    pub n_layer: i32,
    pub n_head: i32,
    /// MLP width (4 × n_embd when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_inner: Option<i32>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f32,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_eps() -> f32 {
    1e-5
}
fn default_activation() -> String {
    "gelu_new".into()
}

impl Gpt2Config {
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ] {
            if v <= 0 {
                return Err(format!("{name} must be positive, got {v}"));
            }
        }
        if self.n_embd % self.n_head != 0 {
            return Err(format!(
                "n_embd ({}) must be a multiple of n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        Activation::parse(&self.activation_function)?;
        Ok(())
    }

    pub fn inner_size(&self) -> i32 {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// The exact erf form (`gelu`).
    Gelu,
    Relu,
}

impl Activation {
    fn parse(name: &str) -> std::result::Result<Self, String> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "gelu" => Ok(Self::Gelu),
            "relu" => Ok(Self::Relu),
            other => Err(format!(
                "activation_function `{other}` is not supported (gelu_new, gelu_pytorch_tanh, gelu, relu)"
            )),
        }
    }

    /// Plain ops rather than mlx-rs's activations: those are `compile`d,
    /// and MLX's CPU compiler writes the library it builds into a cache
    /// that every process shares (`$TMPDIR/mlx`) without an atomic rename,
    /// so two processes building the same one at once could load a
    /// half-written file ("file too short": seen in a clean-clone test run).
    fn apply(self, x: &Array) -> Result<Array, Exception> {
        let half_x = || x.multiply(Array::from_f32(0.5));
        match self {
            Self::GeluTanh => {
                // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
                let cube = x.multiply(x)?.multiply(x)?;
                let inner = x
                    .add(cube.multiply(Array::from_f32(0.044_715))?)?
                    .multiply(Array::from_f32((2.0 / std::f32::consts::PI).sqrt()))?;
                half_x()?.multiply(ops::tanh(&inner)?.add(Array::from_f32(1.0))?)
            }
            Self::Gelu => {
                // 0.5·x·(1 + erf(x/√2))
                let scaled = x.multiply(Array::from_f32(std::f32::consts::FRAC_1_SQRT_2))?;
                half_x()?.multiply(ops::erf(&scaled)?.add(Array::from_f32(1.0))?)
            }
            Self::Relu => ops::maximum(x, Array::from_f32(0.0)),
        }
    }
}

/// LayerNorm with gain and bias.
#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct LayerNorm {
    #[param]
    pub weight: Param<Array>,
    #[param]
    pub bias: Param<Array>,
    pub eps: f32,
}

impl LayerNorm {
    pub fn forward(&self, x: &Array) -> Result<Array, Exception> {
        fast::layer_norm(x, Some(&*self.weight), Some(&*self.bias), self.eps)
    }
}

#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct Gpt2Attention {
    /// q, k and v in one (3·hidden, hidden) projection.
    #[param]
    pub c_attn: Projection,
    #[param]
    pub c_proj: Projection,
    pub num_heads: i32,
    pub head_dim: i32,
}

impl Gpt2Attention {
    fn forward(
        &mut self,
        x: &Array,
        cache: Option<&mut Option<(Array, Array)>>,
    ) -> Result<Array, Exception> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let hidden = self.num_heads * self.head_dim;
        let qkv = self.c_attn.forward(x)?;
        let heads = |a: Array| {
            a.reshape(&[b, l, self.num_heads, self.head_dim])?
                .transpose_axes(&[0, 2, 1, 3])
        };
        let parts = qkv.split_at_indices(&[hidden, 2 * hidden], -1)?;
        let [q, k, v] = <[Array; 3]>::try_from(parts).expect("three sections");
        let (q, k, v) = (heads(q)?, heads(k)?, heads(v)?);
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        let out = cache::attend(&q, k, v, cache, None, scale, Default::default())?;
        let out = out
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[b, l, hidden])?;
        self.c_proj.forward(&out)
    }
}

#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct Gpt2Mlp {
    #[param]
    pub c_fc: Projection,
    #[param]
    pub c_proj: Projection,
    pub activation: Activation,
}

#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct Gpt2Block {
    #[param]
    pub ln_1: LayerNorm,
    #[param]
    pub attn: Gpt2Attention,
    #[param]
    pub ln_2: LayerNorm,
    #[param]
    pub mlp: Gpt2Mlp,
}

#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct Gpt2Transformer {
    /// Token embeddings (vocab, hidden), also the output head.
    #[param]
    pub wte: Projection,
    /// Position embeddings (n_positions, hidden).
    #[param]
    pub wpe: Projection,
    #[param]
    pub h: Vec<Gpt2Block>,
    #[param]
    pub ln_f: LayerNorm,
}

/// A GPT-2 causal language model.
#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct Gpt2 {
    #[param]
    pub transformer: Gpt2Transformer,
    pub config: Gpt2Config,
}

/// The projections of one block, by their names inside it.
pub const TARGETS: &[&str] = &["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

impl Gpt2 {
    /// Logits (B, L, vocab) for token ids (B, L), continuing from `cache`.
    pub fn forward(
        &mut self,
        tokens: &Array,
        cache: Option<&mut KvCache>,
    ) -> Result<Array, Exception> {
        let h = self.hidden_states(tokens, cache)?;
        self.transformer.wte.forward(&h)
    }

    /// The final normed hidden states (B, L, hidden) for token ids (B, L),
    /// continuing from `cache`.
    pub fn hidden_states(
        &mut self,
        tokens: &Array,
        mut cache: Option<&mut KvCache>,
    ) -> Result<Array, Exception> {
        let offset = cache.as_mut().map_or(0, |c| c.begin(tokens.shape()[1]));
        let mut h = self.embeddings(tokens, offset)?;
        for i in 0..self.transformer.h.len() {
            let slot = cache.as_mut().map(|c| c.slot(i));
            h = self.block(i, &h, slot)?;
        }
        self.transformer.ln_f.forward(&h)
    }

    /// Token plus position embeddings of token ids (B, L) starting at
    /// position `offset`.
    pub fn embeddings(&self, tokens: &Array, offset: i32) -> Result<Array, Exception> {
        let l = tokens.shape()[1];
        if offset + l > self.config.n_positions {
            return Err(Exception::custom(format!(
                "GPT-2 sees at most {} positions; got {}",
                self.config.n_positions,
                offset + l
            )));
        }
        let t = &self.transformer;
        let positions = ops::arange::<_, i32>(offset, offset + l, None)?;
        t.wte
            .dense_weight()?
            .take_axis(tokens, 0)?
            .add(t.wpe.dense_weight()?.take_axis(&positions, 0)?)
    }

    /// Block `i` on its input `h` (B, L, hidden).
    pub fn block(
        &mut self,
        i: usize,
        h: &Array,
        slot: Option<&mut Option<(Array, Array)>>,
    ) -> Result<Array, Exception> {
        let block = &mut self.transformer.h[i];
        let attn = block.attn.forward(&block.ln_1.forward(h)?, slot)?;
        let h = h.add(&attn)?;
        let normed = block.ln_2.forward(&h)?;
        let up = block
            .mlp
            .activation
            .apply(&block.mlp.c_fc.forward(&normed)?)?;
        h.add(&block.mlp.c_proj.forward(&up)?)
    }

    /// The output projection (tied to the token embeddings).
    pub fn head(&self) -> &Projection {
        &self.transformer.wte
    }

    /// The named projections of every block.
    pub fn block_projections_mut(&mut self) -> Vec<Vec<(&'static str, &mut Projection)>> {
        self.transformer
            .h
            .iter_mut()
            .map(|b| {
                vec![
                    (TARGETS[0], &mut b.attn.c_attn),
                    (TARGETS[1], &mut b.attn.c_proj),
                    (TARGETS[2], &mut b.mlp.c_fc),
                    (TARGETS[3], &mut b.mlp.c_proj),
                ]
            })
            .collect()
    }

    /// Builds the model from Hugging Face tensors (with or without the
    /// `transformer.` prefix, which the original checkpoints lack).
    pub fn from_weights(mut weights: Weights, config: Gpt2Config) -> Result<Self> {
        let prefixed = weights
            .tensors
            .keys()
            .any(|k| k.starts_with("transformer."));
        if !prefixed {
            weights.tensors = weights
                .tensors
                .drain()
                .map(|(k, v)| {
                    if k.starts_with("lm_head.") {
                        (k, v)
                    } else {
                        (format!("transformer.{k}"), v)
                    }
                })
                .collect();
        }
        let eps = config.layer_norm_epsilon;
        let activation = Activation::parse(&config.activation_function).map_err(Error::Invalid)?;
        let head_dim = config.n_embd / config.n_head;
        let norm = |w: &mut Weights, name: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: Param::new(w.take(&format!("{name}.weight"))?),
                bias: Param::new(w.take(&format!("{name}.bias"))?),
                eps,
            })
        };
        let mut h = Vec::with_capacity(config.n_layer as usize);
        for i in 0..config.n_layer {
            let p = format!("transformer.h.{i}");
            h.push(Gpt2Block {
                ln_1: norm(&mut weights, &format!("{p}.ln_1"))?,
                attn: Gpt2Attention {
                    c_attn: weights.take_conv1d(&format!("{p}.attn.c_attn"))?,
                    c_proj: weights.take_conv1d(&format!("{p}.attn.c_proj"))?,
                    num_heads: config.n_head,
                    head_dim,
                },
                ln_2: norm(&mut weights, &format!("{p}.ln_2"))?,
                mlp: Gpt2Mlp {
                    c_fc: weights.take_conv1d(&format!("{p}.mlp.c_fc"))?,
                    c_proj: weights.take_conv1d(&format!("{p}.mlp.c_proj"))?,
                    activation,
                },
            });
            // Causal-mask buffers older checkpoints carry; the mask is implicit here.
            weights.tensors.remove(&format!("{p}.attn.bias"));
            weights.tensors.remove(&format!("{p}.attn.masked_bias"));
        }
        let wte = weights.take_projection("transformer.wte", false)?;
        let wpe = weights.take_projection("transformer.wpe", false)?;
        let ln_f = norm(&mut weights, "transformer.ln_f")?;
        // The head is always tied in GPT-2; a stored copy is redundant.
        weights.tensors.remove("lm_head.weight");
        Ok(Self {
            transformer: Gpt2Transformer { wte, wpe, h, ln_f },
            config,
        })
    }
}
