//! The Llama-family decoder and its blocks: RMSNorm, grouped-query
//! attention with RoPE, a gated MLP, optionally tied head. Mistral, Qwen2/3
//! and Gemma 2/3 are the same blocks with switches on (q/k norms, sliding
//! windows, Gemma's `(1 + w)` norms, sandwich norms, scaled embeddings,
//! GELU gating, soft-capping): `super::architecture` says which.
//! Parameter names follow Hugging Face (`model.layers.N.self_attn.q_proj…`).

use mlx_rs::{
    error::Exception,
    macros::ModuleParameters,
    module::{Module, Param},
    ops,
    ops::indexing::IndexOp,
    Array,
};

use super::cache::{self, AttentionKind, KvCache};
use super::config::LlamaConfig;
use super::projection::Projection;
use crate::error::{Error, Result};
use crate::kernels;

/// RMSNorm with a learned per-feature gain.
#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct RmsNorm {
    #[param]
    pub weight: Param<Array>,
    pub eps: f32,
    /// Gemma: the gain is `1 + weight` (weights stored around 0).
    pub plus_one: bool,
}

impl RmsNorm {
    pub fn new(weight: Array, eps: f32) -> Self {
        Self {
            weight: Param::new(weight),
            eps,
            plus_one: false,
        }
    }

    pub fn forward(&self, x: &Array) -> Result<Array, Exception> {
        if self.plus_one {
            let gain = self.weight.add(Array::from_f32(1.0))?;
            kernels::rms_norm(x, &gain, self.eps)
        } else {
            kernels::rms_norm(x, &self.weight, self.eps)
        }
    }
}

/// The gate's activation in the MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: silu(gate) · up.
    Silu,
    /// GeGLU with the tanh approximation (Gemma): gelu_tanh(gate) · up.
    GeluTanh,
}

/// Rotary position embedding settings shared by every layer.
#[derive(Debug, Clone)]
pub struct Rope {
    pub dims: i32,
    pub base: f32,
    /// Position multiplier (`1 / factor` for linear scaling).
    pub scale: f32,
    /// Per-dimension periods for llama3-style scaling (replaces `base`).
    pub freqs: Option<Array>,
    /// Phi-3's LongRoPE: periods picked by the sequence's length.
    pub long: Option<LongRope>,
}

/// LongRoPE as transformers computes it: a pass whose last position is
/// beyond `original_max` turns with the long factors, otherwise with the
/// short ones, and the turned features are multiplied by `attention_factor`.
#[derive(Debug, Clone)]
pub struct LongRope {
    pub short: Array,
    pub long: Array,
    pub original_max: i32,
    /// (head_dim): `attention_factor` on the turned features, 1 on the rest.
    pub feature_scale: Array,
}

impl Rope {
    pub fn from_config(config: &LlamaConfig) -> Result<Self> {
        let dims = config.rotary_dims();
        let mut rope = Rope {
            dims,
            base: config.rope_theta,
            scale: 1.0,
            freqs: None,
            long: None,
        };
        let Some(scaling) = &config.rope_scaling else {
            return Ok(rope);
        };
        match scaling.rope_type.as_str() {
            "default" => {}
            "linear" => rope.scale = 1.0 / scaling.factor,
            "llama3" => rope.freqs = Some(llama3_periods(config, dims)?),
            "longrope" | "su" => rope.long = Some(long_rope(config, dims)?),
            other => {
                return Err(Error::Invalid(format!(
                "rope_scaling type `{other}` is not supported (supported: default, linear, llama3, longrope)"
            )))
            }
        }
        Ok(rope)
    }

    /// Gemma 3's sliding-window layers: their own base, never scaled.
    pub fn local(config: &LlamaConfig, base: f32) -> Self {
        Rope {
            dims: config.rotary_dims(),
            base,
            scale: 1.0,
            freqs: None,
            long: None,
        }
    }

    /// Turns x (B, H, L, D) whose first position is `offset`.
    fn apply(&self, x: &Array, offset: i32) -> Result<Array, Exception> {
        let periods = match &self.long {
            Some(l) if offset + x.shape()[2] > l.original_max => Some(&l.long),
            Some(l) => Some(&l.short),
            None => self.freqs.as_ref(),
        };
        let turned = kernels::rope(
            x,
            kernels::RopeSpec {
                dims: self.dims,
                base: self.base,
                periods,
                scale: self.scale,
                offset,
            },
        )?;
        match &self.long {
            Some(l) => turned.multiply(&l.feature_scale),
            None => Ok(turned),
        }
    }
}

/// Llama 3.1's frequency-dependent stretch of the RoPE periods, as
/// transformers computes it; MLX takes periods (1 / inverse frequency).
fn llama3_periods(config: &LlamaConfig, dims: i32) -> Result<Array> {
    let s = config.rope_scaling.as_ref().expect("checked by caller");
    let missing = |what: &str| Error::Invalid(format!("llama3 rope_scaling needs `{what}`"));
    let low = s
        .low_freq_factor
        .ok_or_else(|| missing("low_freq_factor"))?;
    let high = s
        .high_freq_factor
        .ok_or_else(|| missing("high_freq_factor"))?;
    let old_ctx = s
        .original_max_position_embeddings
        .ok_or_else(|| missing("original_max_position_embeddings"))? as f32;
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    let periods: Vec<f32> = (0..dims / 2)
        .map(|i| {
            let inv = 1.0 / config.rope_theta.powf(2.0 * i as f32 / dims as f32);
            let wavelen = 2.0 * std::f32::consts::PI / inv;
            let scaled = if wavelen > low_wavelen {
                inv / s.factor
            } else {
                inv
            };
            let adjusted = if wavelen < high_wavelen || wavelen > low_wavelen {
                scaled
            } else {
                let smooth = (old_ctx / wavelen - low) / (high - low);
                (1.0 - smooth) * scaled / s.factor + smooth * scaled
            };
            1.0 / adjusted
        })
        .collect();
    Ok(Array::from_slice(&periods, &[dims / 2]))
}

/// Phi-3's LongRoPE from its config: periods `factor[i] · base^(2i/d)` for
/// each factor set, and transformers' default attention factor
/// `sqrt(1 + ln(max / original) / ln(original))`.
fn long_rope(config: &LlamaConfig, dims: i32) -> Result<LongRope> {
    let s = config.rope_scaling.as_ref().expect("checked by caller");
    let missing = |what: &str| Error::Invalid(format!("longrope rope_scaling needs `{what}`"));
    let original_max = config
        .original_max_position_embeddings
        .or(s.original_max_position_embeddings)
        .ok_or_else(|| missing("original_max_position_embeddings"))?;
    let periods = |factors: Option<&Vec<f32>>, name: &str| -> Result<Array> {
        let factors = factors.ok_or_else(|| missing(name))?;
        if factors.len() as i32 != dims / 2 {
            return Err(Error::Invalid(format!(
                "longrope `{name}` has {} values; {dims} rotated features need {}",
                factors.len(),
                dims / 2
            )));
        }
        let periods: Vec<f32> = factors
            .iter()
            .enumerate()
            .map(|(i, f)| f * config.rope_theta.powf(2.0 * i as f32 / dims as f32))
            .collect();
        Ok(Array::from_slice(&periods, &[dims / 2]))
    };
    let attention_factor = s.attention_factor.unwrap_or_else(|| {
        let max = config.max_position_embeddings.unwrap_or(original_max) as f32;
        let ratio = max / original_max as f32;
        if ratio <= 1.0 {
            1.0
        } else {
            (1.0 + ratio.ln() / (original_max as f32).ln()).sqrt()
        }
    });
    let head_dim = config.head_dim();
    let scale: Vec<f32> = (0..head_dim)
        .map(|i| if i < dims { attention_factor } else { 1.0 })
        .collect();
    Ok(LongRope {
        short: periods(s.short_factor.as_ref(), "short_factor")?,
        long: periods(s.long_factor.as_ref(), "long_factor")?,
        original_max,
        feature_scale: Array::from_slice(&scale, &[head_dim]),
    })
}

#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct Attention {
    /// Separate q, k and v projections — or, Phi-3, `qkv_proj`: the three
    /// in one (rows q, then k, then v), as PEFT and mlx-lm name it.
    #[param]
    pub q_proj: Option<Projection>,
    #[param]
    pub k_proj: Option<Projection>,
    #[param]
    pub v_proj: Option<Projection>,
    #[param]
    pub qkv_proj: Option<Projection>,
    #[param]
    pub o_proj: Projection,
    /// Qwen3 / Gemma 3: RMSNorm of each head's queries and keys before RoPE.
    #[param]
    pub q_norm: Option<RmsNorm>,
    #[param]
    pub k_norm: Option<RmsNorm>,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    /// Multiplier of the scores (`head_dim^-0.5` unless the model says).
    pub scale: f32,
    /// Window and soft-cap of this layer.
    pub kind: AttentionKind,
}

impl Attention {
    /// Without a cache (training, evaluation) attention is causal over the
    /// whole input, within each example of `segments` when rows are packed;
    /// with one it continues from the cached keys and values.
    fn forward(
        &mut self,
        x: &Array,
        rope: &Rope,
        cache: Option<&mut Option<(Array, Array)>>,
        offset: i32,
        segments: Option<&Array>,
    ) -> Result<Array, Exception> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let (q, k, v) = self.project_qkv(x)?;
        let head_dim = self.head_dim;
        let heads = |a: Array, n: i32, norm: Option<&RmsNorm>| {
            let a = a.reshape(&[b, l, n, head_dim])?;
            let a = match norm {
                Some(norm) => norm.forward(&a)?,
                None => a,
            };
            a.transpose_axes(&[0, 2, 1, 3])
        };
        let q = heads(q, self.num_heads, self.q_norm.as_ref())?;
        let k = heads(k, self.num_kv_heads, self.k_norm.as_ref())?;
        let v = heads(v, self.num_kv_heads, None)?;
        let q = rope.apply(&q, offset)?;
        let k = rope.apply(&k, offset)?;
        let out = cache::attend(&q, k, v, cache, segments, self.scale, self.kind)?;
        let out =
            out.transpose_axes(&[0, 2, 1, 3])?
                .reshape(&[b, l, self.num_heads * self.head_dim])?;
        self.o_proj.forward(&out)
    }

    /// Queries, keys and values (B, L, heads · head_dim each).
    fn project_qkv(&mut self, x: &Array) -> Result<(Array, Array, Array), Exception> {
        if let Some(qkv) = &mut self.qkv_proj {
            let fused = qkv.forward(x)?;
            let q_end = self.num_heads * self.head_dim;
            let k_end = q_end + self.num_kv_heads * self.head_dim;
            let k_len = k_end - q_end;
            let cols = |start: i32, len: i32| fused.index((.., .., start..start + len));
            return Ok((cols(0, q_end), cols(q_end, k_len), cols(k_end, k_len)));
        }
        let missing = || Exception::custom("attention has neither q/k/v nor qkv projections");
        Ok((
            self.q_proj.as_mut().ok_or_else(missing)?.forward(x)?,
            self.k_proj.as_mut().ok_or_else(missing)?.forward(x)?,
            self.v_proj.as_mut().ok_or_else(missing)?.forward(x)?,
        ))
    }
}

#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct Mlp {
    /// Separate gate and up projections — or, Phi-3, `gate_up_proj`: both
    /// in one (gate rows first).
    #[param]
    pub gate_proj: Option<Projection>,
    #[param]
    pub up_proj: Option<Projection>,
    #[param]
    pub gate_up_proj: Option<Projection>,
    #[param]
    pub down_proj: Projection,
    pub activation: Activation,
}

impl Mlp {
    fn forward(&mut self, x: &Array) -> Result<Array, Exception> {
        let (gate, up) = match (
            &mut self.gate_up_proj,
            &mut self.gate_proj,
            &mut self.up_proj,
        ) {
            (Some(fused), _, _) => {
                let both = fused.forward(x)?;
                let half = both.shape()[2] / 2;
                (both.index((.., .., ..half)), both.index((.., .., half..)))
            }
            (None, Some(gate), Some(up)) => (gate.forward(x)?, up.forward(x)?),
            _ => return Err(Exception::custom("the MLP has no gate and up projections")),
        };
        let gated = match self.activation {
            Activation::Silu => kernels::swiglu(&gate, &up)?,
            Activation::GeluTanh => gelu_tanh(&gate)?.multiply(&up)?,
        };
        self.down_proj.forward(&gated)
    }
}

/// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))` with plain ops (mlx-rs's
/// `gelu_approximate` is `compile`d, whose CPU kernels cache is shared
/// between processes without atomic writes).
fn gelu_tanh(x: &Array) -> Result<Array, Exception> {
    let c = (2.0f32 / std::f32::consts::PI).sqrt();
    let cubic = x
        .multiply(x)?
        .multiply(x)?
        .multiply(Array::from_f32(0.044715))?;
    let inner = x.add(&cubic)?.multiply(Array::from_f32(c))?;
    let one_plus = ops::tanh(&inner)?.add(Array::from_f32(1.0))?;
    x.multiply(Array::from_f32(0.5))?.multiply(&one_plus)
}

#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct DecoderLayer {
    #[param]
    pub self_attn: Attention,
    #[param]
    pub mlp: Mlp,
    #[param]
    pub input_layernorm: RmsNorm,
    /// Llama: the norm before the MLP. Gemma 2/3: the norm of the
    /// attention's output, before the residual add.
    #[param]
    pub post_attention_layernorm: RmsNorm,
    /// Gemma 2/3's sandwich: norms before and after the MLP.
    #[param]
    pub pre_feedforward_layernorm: Option<RmsNorm>,
    #[param]
    pub post_feedforward_layernorm: Option<RmsNorm>,
}

#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct LlamaModel {
    /// (vocab, hidden); quantized embeddings are looked up row by row.
    #[param]
    pub embed_tokens: Projection,
    #[param]
    pub layers: Vec<DecoderLayer>,
    #[param]
    pub norm: RmsNorm,
}

impl DecoderLayer {
    /// The layer's projections by their names inside it (those it has).
    pub fn projections_mut(&mut self) -> Vec<(&'static str, &mut Projection)> {
        let (a, f) = (&mut self.self_attn, &mut self.mlp);
        let named = [
            ("self_attn.q_proj", a.q_proj.as_mut()),
            ("self_attn.k_proj", a.k_proj.as_mut()),
            ("self_attn.v_proj", a.v_proj.as_mut()),
            ("self_attn.qkv_proj", a.qkv_proj.as_mut()),
            ("self_attn.o_proj", Some(&mut a.o_proj)),
            ("mlp.gate_proj", f.gate_proj.as_mut()),
            ("mlp.up_proj", f.up_proj.as_mut()),
            ("mlp.gate_up_proj", f.gate_up_proj.as_mut()),
            ("mlp.down_proj", Some(&mut f.down_proj)),
        ];
        named
            .into_iter()
            .filter_map(|(name, p)| p.map(|p| (name, p)))
            .collect()
    }

    /// The layer's projections, read-only, in the same order.
    pub fn projections(&self) -> Vec<&Projection> {
        let (a, f) = (&self.self_attn, &self.mlp);
        [
            a.q_proj.as_ref(),
            a.k_proj.as_ref(),
            a.v_proj.as_ref(),
            a.qkv_proj.as_ref(),
            Some(&a.o_proj),
            f.gate_proj.as_ref(),
            f.up_proj.as_ref(),
            f.gate_up_proj.as_ref(),
            Some(&f.down_proj),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Phi-3's projections, fused as PEFT and mlx-lm name them.
pub const FUSED_TARGETS: &[&str] = &[
    "self_attn.qkv_proj",
    "self_attn.o_proj",
    "mlp.gate_up_proj",
    "mlp.down_proj",
];

/// The projections of one decoder layer, by their names inside it.
pub const TARGETS: &[&str] = &[
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// A Llama-family causal language model.
#[derive(Debug, Clone, ModuleParameters)]
#[module(root = mlx_rs)]
pub struct Llama {
    #[param]
    pub model: LlamaModel,
    /// Absent when the head is tied to the embeddings.
    #[param]
    pub lm_head: Option<Projection>,
    pub config: LlamaConfig,
    pub rope: Rope,
    /// Gemma 3: the RoPE of the sliding-window layers.
    pub local_rope: Option<Rope>,
    /// Gemma: embeddings are multiplied by √hidden.
    pub embed_scale: Option<f32>,
    /// Gemma 2: `cap · tanh(logit / cap)` on the output logits.
    pub final_softcap: Option<f32>,
}

impl Llama {
    /// Embeds token ids (B, L) into (B, L, hidden).
    pub fn embed(&self, tokens: &Array) -> Result<Array, Exception> {
        let rows = self.embedding_rows(tokens)?;
        match self.embed_scale {
            Some(s) => rows.multiply(Array::from_f32(s)),
            None => Ok(rows),
        }
    }

    fn embedding_rows(&self, tokens: &Array) -> Result<Array, Exception> {
        let e = &self.model.embed_tokens;
        let rows = e.weight.take_axis(tokens, 0)?;
        match (e.quantization, &*e.scales, &*e.biases) {
            (Some(q), Some(scales), biases) => {
                let biases = biases
                    .as_ref()
                    .map(|b| b.take_axis(tokens, 0))
                    .transpose()?;
                ops::dequantize(
                    &rows,
                    scales.take_axis(tokens, 0)?,
                    biases.as_ref(),
                    q.group_size,
                    q.bits,
                )
            }
            _ => Ok(rows),
        }
    }

    /// Logits (B, L, vocab) for token ids (B, L), continuing from `cache`.
    pub fn forward(
        &mut self,
        tokens: &Array,
        cache: Option<&mut KvCache>,
    ) -> Result<Array, Exception> {
        let h = self.hidden_states(tokens, cache, None)?;
        let logits = match &mut self.lm_head {
            Some(head) => head.forward(&h)?,
            None => self.model.embed_tokens.forward(&h)?,
        };
        self.softcap_logits(logits)
    }

    /// Applies the final soft-cap (Gemma 2) to logits from the head.
    pub fn softcap_logits(&self, logits: Array) -> Result<Array, Exception> {
        match self.final_softcap {
            Some(cap) => {
                let cap = Array::from_f32(cap);
                ops::tanh(logits.divide(&cap)?)?.multiply(&cap)
            }
            None => Ok(logits),
        }
    }

    /// The final normed hidden states (B, L, hidden) for token ids (B, L):
    /// continuing from `cache`, or, without one, attending causally within
    /// each example of `segments` (B, L) when rows are packed.
    pub fn hidden_states(
        &mut self,
        tokens: &Array,
        mut cache: Option<&mut KvCache>,
        segments: Option<&Array>,
    ) -> Result<Array, Exception> {
        let offset = cache.as_mut().map_or(0, |c| c.begin(tokens.shape()[1]));
        let mut h = self.embed(tokens)?;
        for i in 0..self.model.layers.len() {
            let slot = cache.as_mut().map(|c| c.slot(i));
            h = self.layer(i, &h, slot, offset, segments)?;
        }
        self.model.norm.forward(&h)
    }

    /// Decoder layer `i` on its input `h` (B, L, hidden).
    pub fn layer(
        &mut self,
        i: usize,
        h: &Array,
        slot: Option<&mut Option<(Array, Array)>>,
        offset: i32,
        segments: Option<&Array>,
    ) -> Result<Array, Exception> {
        let layer = &mut self.model.layers[i];
        let rope = match (&self.local_rope, layer.self_attn.kind.window) {
            (Some(local), Some(_)) => local,
            _ => &self.rope,
        };
        let normed = layer.input_layernorm.forward(h)?;
        let attn = layer
            .self_attn
            .forward(&normed, rope, slot, offset, segments)?;
        match (
            &layer.pre_feedforward_layernorm,
            &layer.post_feedforward_layernorm,
        ) {
            (Some(pre), Some(post)) => {
                let h = h.add(&layer.post_attention_layernorm.forward(&attn)?)?;
                let mlp = layer.mlp.forward(&pre.forward(&h)?)?;
                h.add(&post.forward(&mlp)?)
            }
            _ => {
                let h = h.add(&attn)?;
                let normed = layer.post_attention_layernorm.forward(&h)?;
                h.add(&layer.mlp.forward(&normed)?)
            }
        }
    }

    /// The output projection: the head, or the embeddings when tied.
    pub fn head(&self) -> &Projection {
        self.lm_head.as_ref().unwrap_or(&self.model.embed_tokens)
    }

    /// The named projections of every decoder layer.
    pub fn block_projections_mut(&mut self) -> Vec<Vec<(&'static str, &mut Projection)>> {
        self.model
            .layers
            .iter_mut()
            .map(DecoderLayer::projections_mut)
            .collect()
    }

    /// Names of the projections adapters can target.
    pub fn targets(&self) -> &'static [&'static str] {
        match self.model.layers.first() {
            Some(l) if l.self_attn.qkv_proj.is_some() => FUSED_TARGETS,
            _ => TARGETS,
        }
    }
}
