//! A loaded set of named tensors (Hugging Face names) and the model built
//! from it. Quantized layers follow mlx-lm's convention: `X.weight` (packed
//! uint32), `X.scales`, `X.biases`.

use std::collections::HashMap;

use mlx_rs::Array;

use super::architecture;
use super::cache::AttentionKind;
use super::config::LlamaConfig;
use super::llama::{Activation, Attention, DecoderLayer, Llama, LlamaModel, Mlp, RmsNorm, Rope};
use super::projection::{Projection, Quantization};
use crate::error::{Error, Result};

/// Tensors by name, with where they came from (for error messages).
pub struct Weights {
    pub source: String,
    pub tensors: HashMap<String, Array>,
    /// Group size of quantized tensors (GGUF blocks are 32 wide).
    pub group_size: i32,
}

impl Weights {
    pub(crate) fn take(&mut self, name: &str) -> Result<Array> {
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::Invalid(format!("{}: tensor `{name}` is missing", self.source)))
    }

    pub(crate) fn take_projection(&mut self, prefix: &str, bias: bool) -> Result<Projection> {
        let weight = self.take(&format!("{prefix}.weight"))?;
        let bias = if bias {
            Some(self.take(&format!("{prefix}.bias"))?)
        } else {
            self.tensors.remove(&format!("{prefix}.bias"))
        };
        if let Some(b) = &bias {
            if b.ndim() != 1 {
                return Err(Error::Invalid(format!(
                    "{}: tensor `{prefix}.bias`: shape: expected a vector, got {:?}",
                    self.source,
                    b.shape()
                )));
            }
        }
        match self.tensors.remove(&format!("{prefix}.scales")) {
            Some(scales) => {
                let biases = self.take(&format!("{prefix}.biases"))?;
                let quantization = self.check_quantized(prefix, &weight, &scales, &biases)?;
                Ok(Projection::quantized(
                    weight,
                    scales,
                    biases,
                    bias,
                    quantization,
                ))
            }
            None => {
                if weight.ndim() != 2 {
                    return Err(Error::Invalid(format!(
                        "{}: tensor `{prefix}.weight`: shape: expected a matrix, got {:?}",
                        self.source,
                        weight.shape()
                    )));
                }
                Ok(Projection::dense(weight, bias))
            }
        }
    }

    /// Checks a quantized layer's packed weight, scales and biases against
    /// each other and the group size, and returns its quantization.
    fn check_quantized(
        &self,
        prefix: &str,
        weight: &Array,
        scales: &Array,
        biases: &Array,
    ) -> Result<Quantization> {
        let bad = |what: String| Error::Invalid(format!("{}: `{prefix}`: {what}", self.source));
        let group_size = self.group_size;
        if !matches!(group_size, 32 | 64 | 128) {
            return Err(bad(format!(
                "group_size: expected 32, 64 or 128, got {group_size}"
            )));
        }
        if weight.dtype() != mlx_rs::Dtype::Uint32 {
            return Err(bad(format!(
                "weight: expected packed uint32 values beside scales, got {:?}",
                weight.dtype()
            )));
        }
        let (w, s) = (weight.shape(), scales.shape());
        if w.len() != 2 || s.len() != 2 || s[0] != w[0] || s[1] <= 0 || w[1] <= 0 {
            return Err(bad(format!(
                "scales: shape {s:?} does not fit weight {w:?}: expected (rows, groups) with the weight's rows"
            )));
        }
        if biases.shape() != s {
            return Err(bad(format!(
                "biases: expected the scales' shape {s:?}, got {:?}",
                biases.shape()
            )));
        }
        // Each group of `group_size` inputs packs into bits·group/32 words.
        let bits = if w[1] % s[1] == 0 {
            let words_per_group = w[1] / s[1];
            (words_per_group * 32 % group_size == 0).then(|| words_per_group * 32 / group_size)
        } else {
            None
        };
        match bits {
            Some(bits @ (2 | 3 | 4 | 5 | 6 | 8)) => Ok(Quantization { group_size, bits }),
            _ => Err(bad(format!(
                "scales: {} groups of {group_size} over {} packed words per row give no bit width of 2, 3, 4, 5, 6 or 8",
                s[1], w[1]
            ))),
        }
    }

    /// Checks that a projection maps `inputs` features to `outputs`.
    fn check_dims(
        &self,
        name: &str,
        p: &Projection,
        outputs: i32,
        inputs: i32,
        what: &str,
    ) -> Result<()> {
        let (o, i) = (p.output_dims(), p.input_dims());
        if (o, i) != (outputs, inputs) {
            return Err(Error::Invalid(format!(
                "{}: tensor `{name}.weight`: shape: expected {outputs} × {inputs} ({what} in config.json), got {o} × {i}",
                self.source
            )));
        }
        Ok(())
    }

    /// Checks a norm's weight is a vector of `n`.
    fn check_vector(&self, name: &str, v: &Array, n: i32, what: &str) -> Result<()> {
        if v.shape() != [n] {
            return Err(Error::Invalid(format!(
                "{}: tensor `{name}`: shape: expected [{n}] ({what} in config.json), got {:?}",
                self.source,
                v.shape()
            )));
        }
        Ok(())
    }

    /// A Hugging Face `Conv1D` layer: weight (in, out) and a bias, made an
    /// ordinary (out, in) projection.
    pub(crate) fn take_conv1d(&mut self, prefix: &str) -> Result<Projection> {
        let weight = self.take(&format!("{prefix}.weight"))?;
        let bias = self.take(&format!("{prefix}.bias"))?;
        if weight.ndim() != 2 {
            return Err(Error::Invalid(format!(
                "{}: `{prefix}.weight` should be a matrix, has shape {:?}",
                self.source,
                weight.shape()
            )));
        }
        Ok(Projection::dense(weight.t(), Some(bias)))
    }

    /// Builds a Llama-family model, consuming the tensors it uses.
    pub fn into_llama(mut self, config: LlamaConfig) -> Result<Llama> {
        let arch = architecture::by_model_type(&config.model_type).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: model_type `{}` is not a Llama-family architecture",
                self.source, config.model_type
            ))
        })?;
        let head_dim = config.head_dim();
        let eps = config.rms_norm_eps;
        let activation = match config.activation() {
            Some("gelu_pytorch_tanh" | "gelu_tanh") => Activation::GeluTanh,
            Some(_) => Activation::Silu,
            None if arch.gemma => Activation::GeluTanh,
            None => Activation::Silu,
        };
        let scale = 1.0
            / config
                .query_pre_attn_scalar
                .unwrap_or(head_dim as f32)
                .sqrt();
        let windows = config.layer_windows();
        let mut layers = Vec::with_capacity(config.num_hidden_layers as usize);
        for (i, &window) in windows.iter().enumerate() {
            let p = format!("model.layers.{i}");
            // Projections first: a missing layer is named by its q_proj.
            let take = |w: &mut Self, name: &str, bias: bool| -> Result<Option<Projection>> {
                w.take_projection(&format!("{p}.{name}"), bias).map(Some)
            };
            let (q_proj, k_proj, v_proj, qkv_proj) = if arch.fused_projections {
                let qkv = take(&mut self, "self_attn.qkv_proj", config.qkv_bias())?;
                (None, None, None, qkv)
            } else {
                (
                    take(&mut self, "self_attn.q_proj", config.qkv_bias())?,
                    take(&mut self, "self_attn.k_proj", config.qkv_bias())?,
                    take(&mut self, "self_attn.v_proj", config.qkv_bias())?,
                    None,
                )
            };
            let (hidden, heads, kv) = (
                config.hidden_size,
                config.num_attention_heads,
                config.kv_heads(),
            );
            let dims = "hidden_size, num_attention_heads, num_key_value_heads, head_dim";
            for (name, proj, outputs) in [
                ("self_attn.q_proj", &q_proj, heads * head_dim),
                ("self_attn.k_proj", &k_proj, kv * head_dim),
                ("self_attn.v_proj", &v_proj, kv * head_dim),
                ("self_attn.qkv_proj", &qkv_proj, (heads + 2 * kv) * head_dim),
            ] {
                if let Some(proj) = proj {
                    self.check_dims(&format!("{p}.{name}"), proj, outputs, hidden, dims)?;
                }
            }
            let o_proj = self.take_projection(&format!("{p}.self_attn.o_proj"), config.o_bias())?;
            self.check_dims(
                &format!("{p}.self_attn.o_proj"),
                &o_proj,
                hidden,
                heads * head_dim,
                dims,
            )?;
            let (gate_proj, up_proj, gate_up_proj) = if arch.fused_projections {
                (
                    None,
                    None,
                    take(&mut self, "mlp.gate_up_proj", config.mlp_bias)?,
                )
            } else {
                (
                    take(&mut self, "mlp.gate_proj", config.mlp_bias)?,
                    take(&mut self, "mlp.up_proj", config.mlp_bias)?,
                    None,
                )
            };
            let inter = config.intermediate_size;
            let mlp_dims = "hidden_size, intermediate_size";
            for (name, proj, outputs) in [
                ("mlp.gate_proj", &gate_proj, inter),
                ("mlp.up_proj", &up_proj, inter),
                ("mlp.gate_up_proj", &gate_up_proj, 2 * inter),
            ] {
                if let Some(proj) = proj {
                    self.check_dims(&format!("{p}.{name}"), proj, outputs, hidden, mlp_dims)?;
                }
            }
            let down_proj = self.take_projection(&format!("{p}.mlp.down_proj"), config.mlp_bias)?;
            self.check_dims(
                &format!("{p}.mlp.down_proj"),
                &down_proj,
                hidden,
                inter,
                mlp_dims,
            )?;
            let mlp = Mlp {
                gate_proj,
                up_proj,
                gate_up_proj,
                down_proj,
                activation,
            };
            let mut norm = |name: &str| -> Result<RmsNorm> {
                let weight_name = format!("{p}.{name}.weight");
                let weight = self.take(&weight_name)?;
                let (size, what) = if name.ends_with("q_norm") || name.ends_with("k_norm") {
                    (head_dim, "head_dim")
                } else {
                    (hidden, "hidden_size")
                };
                self.check_vector(&weight_name, &weight, size, what)?;
                let mut n = RmsNorm::new(weight, eps);
                n.plus_one = arch.gemma;
                Ok(n)
            };
            let (q_norm, k_norm) = if arch.qk_norm {
                (
                    Some(norm("self_attn.q_norm")?),
                    Some(norm("self_attn.k_norm")?),
                )
            } else {
                (None, None)
            };
            let input_layernorm = norm("input_layernorm")?;
            let post_attention_layernorm = norm("post_attention_layernorm")?;
            let (pre_feedforward_layernorm, post_feedforward_layernorm) = if arch.gemma {
                (
                    Some(norm("pre_feedforward_layernorm")?),
                    Some(norm("post_feedforward_layernorm")?),
                )
            } else {
                (None, None)
            };
            let self_attn = Attention {
                q_proj,
                k_proj,
                v_proj,
                qkv_proj,
                o_proj,
                q_norm,
                k_norm,
                num_heads: config.num_attention_heads,
                num_kv_heads: config.kv_heads(),
                head_dim,
                scale,
                kind: AttentionKind {
                    window,
                    softcap: config.attn_logit_softcapping,
                },
            };
            layers.push(DecoderLayer {
                self_attn,
                mlp,
                input_layernorm,
                post_attention_layernorm,
                pre_feedforward_layernorm,
                post_feedforward_layernorm,
            });
        }
        let embed_tokens = self.take_projection("model.embed_tokens", false)?;
        let vocab_dims = "vocab_size, hidden_size";
        self.check_dims(
            "model.embed_tokens",
            &embed_tokens,
            config.vocab_size,
            config.hidden_size,
            vocab_dims,
        )?;
        let final_norm = self.take("model.norm.weight")?;
        self.check_vector(
            "model.norm.weight",
            &final_norm,
            config.hidden_size,
            "hidden_size",
        )?;
        let mut norm = RmsNorm::new(final_norm, eps);
        norm.plus_one = arch.gemma;
        let has_head = self.tensors.contains_key("lm_head.weight");
        let lm_head = if has_head && !config.tie_word_embeddings {
            let head = self.take_projection("lm_head", false)?;
            self.check_dims(
                "lm_head",
                &head,
                config.vocab_size,
                config.hidden_size,
                vocab_dims,
            )?;
            Some(head)
        } else if config.tie_word_embeddings {
            None
        } else {
            return Err(Error::Invalid(format!(
                "{}: tensor `lm_head.weight` is missing and tie_word_embeddings is false",
                self.source
            )));
        };
        // Rotary caches some exporters keep are recomputed, not loaded.
        self.tensors
            .retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
        let rope = Rope::from_config(&config)?;
        // Gemma 3's local layers turn with their own base; Gemma 2 has one.
        let local_rope = (config.model_type == "gemma3_text")
            .then(|| Rope::local(&config, config.rope_local_base_freq.unwrap_or(10_000.0)));
        Ok(Llama {
            model: LlamaModel {
                embed_tokens,
                layers,
                norm,
            },
            lm_head,
            rope,
            local_rope,
            embed_scale: arch.gemma.then(|| (config.hidden_size as f32).sqrt()),
            final_softcap: config.final_logit_softcapping,
            config,
        })
    }
}
