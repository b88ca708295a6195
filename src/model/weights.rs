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
        match self.tensors.remove(&format!("{prefix}.scales")) {
            Some(scales) => {
                let biases = self.take(&format!("{prefix}.biases"))?;
                // Each group of `group_size` inputs packs into bits·group/32 words.
                let words_per_group = weight.shape()[1] / scales.shape()[1];
                let bits = words_per_group * 32 / self.group_size;
                Ok(Projection::quantized(
                    weight,
                    scales,
                    biases,
                    bias,
                    Quantization {
                        group_size: self.group_size,
                        bits,
                    },
                ))
            }
            None => Ok(Projection::dense(weight, bias)),
        }
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
            let o_proj = self.take_projection(&format!("{p}.self_attn.o_proj"), config.o_bias())?;
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
            let mlp = Mlp {
                gate_proj,
                up_proj,
                gate_up_proj,
                down_proj: self.take_projection(&format!("{p}.mlp.down_proj"), config.mlp_bias)?,
                activation,
            };
            let mut norm = |name: &str| -> Result<RmsNorm> {
                let mut n = RmsNorm::new(self.take(&format!("{p}.{name}.weight"))?, eps);
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
        let mut norm = RmsNorm::new(self.take("model.norm.weight")?, eps);
        norm.plus_one = arch.gemma;
        let has_head = self.tensors.contains_key("lm_head.weight");
        let lm_head = if has_head && !config.tie_word_embeddings {
            Some(self.take_projection("lm_head", false)?)
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
