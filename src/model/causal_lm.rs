//! [`Model`]: any supported architecture behind one type, so the trainer,
//! adapters, generation and export never ask which one they hold.

use mlx_rs::{
    error::Exception,
    module::{ModuleParamMut, ModuleParamRef, ModuleParameters},
    Array, Dtype,
};
use serde_json::json;

use super::cache::KvCache;
use super::gpt2::{self, Gpt2};
use super::llama::Llama;
use super::projection::Projection;
use mlx_rs::module::Module;

/// The sizes that decide a model's compute and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub vocab: usize,
}

/// A causal language model of one of the supported architectures.
#[derive(Debug, Clone)]
// One value per loaded model: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Model {
    Llama(Llama),
    Gpt2(Gpt2),
}

macro_rules! each {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Model::Llama($m) => $body,
            Model::Gpt2($m) => $body,
        }
    };
}

impl ModuleParameters for Model {
    fn num_parameters(&self) -> usize {
        each!(self, m => m.num_parameters())
    }
    fn parameters(&self) -> ModuleParamRef<'_> {
        each!(self, m => m.parameters())
    }
    fn parameters_mut(&mut self) -> ModuleParamMut<'_> {
        each!(self, m => m.parameters_mut())
    }
    fn trainable_parameters(&self) -> ModuleParamRef<'_> {
        each!(self, m => m.trainable_parameters())
    }
    fn freeze_parameters(&mut self, recursive: bool) {
        each!(self, m => m.freeze_parameters(recursive))
    }
    fn unfreeze_parameters(&mut self, recursive: bool) {
        each!(self, m => m.unfreeze_parameters(recursive))
    }
    fn all_frozen(&self) -> Option<bool> {
        each!(self, m => m.all_frozen())
    }
    fn any_frozen(&self) -> Option<bool> {
        each!(self, m => m.any_frozen())
    }
}

/// GPT-2's learned absolute positions make a packed example compute
/// something else than it would alone.
fn gpt2_cannot_pack() -> Exception {
    Exception::custom(
        "packing needs a rotary-position model (Llama, Mistral, Qwen, Gemma); GPT-2's positions are absolute",
    )
}

impl Model {
    /// Logits (B, L, vocab) for token ids (B, L), continuing from `cache`.
    pub fn forward(
        &mut self,
        tokens: &Array,
        cache: Option<&mut KvCache>,
    ) -> Result<Array, Exception> {
        each!(self, m => m.forward(tokens, cache))
    }

    /// The final normed hidden states (B, L, hidden), before the output
    /// projection. `segments` (B, L) gives each position's example when rows
    /// pack several, and attention stays inside it (causal). RoPE makes
    /// attention depend only on relative positions, so a packed example
    /// computes what it would alone. GPT-2's learned absolute positions do
    /// not have that property, so packing it is refused.
    pub fn hidden_states(
        &mut self,
        tokens: &Array,
        segments: Option<&Array>,
    ) -> Result<Array, Exception> {
        match self {
            Model::Llama(m) => m.hidden_states(tokens, None, segments),
            Model::Gpt2(_) if segments.is_some() => Err(gpt2_cannot_pack()),
            Model::Gpt2(m) => m.hidden_states(tokens, None),
        }
    }

    /// The first decoder layer's input for token ids (B, L): the token
    /// embeddings (plus, for GPT-2, the position embeddings).
    pub fn layer_input(&mut self, tokens: &Array) -> Result<Array, Exception> {
        match self {
            Model::Llama(m) => m.embed(tokens),
            Model::Gpt2(m) => m.embeddings(tokens, 0),
        }
    }

    /// Decoder layer `i` on its input `h` (B, L, hidden), without a cache;
    /// `segments` as in [`Model::hidden_states`].
    pub fn layer_forward(
        &mut self,
        i: usize,
        h: &Array,
        segments: Option<&Array>,
    ) -> Result<Array, Exception> {
        match self {
            Model::Llama(m) => m.layer(i, h, None, 0, segments),
            Model::Gpt2(_) if segments.is_some() => Err(gpt2_cannot_pack()),
            Model::Gpt2(m) => m.block(i, h, None),
        }
    }

    /// The norm after the last layer.
    pub fn final_norm(&mut self, h: &Array) -> Result<Array, Exception> {
        match self {
            Model::Llama(m) => m.model.norm.forward(h),
            Model::Gpt2(m) => m.transformer.ln_f.forward(h),
        }
    }

    /// How layer `i`'s parameter names begin (`model.layers.3.`).
    pub fn layer_prefix(&self, i: usize) -> String {
        match self {
            Model::Llama(_) => format!("model.layers.{i}."),
            Model::Gpt2(_) => format!("transformer.h.{i}."),
        }
    }

    /// The output projection (the embeddings when tied).
    pub fn head(&self) -> &Projection {
        each!(self, m => m.head())
    }

    /// Logits for rows that pack several examples (see [`Model::hidden_states`]).
    pub fn forward_packed(&mut self, tokens: &Array, segments: &Array) -> Result<Array, Exception> {
        let h = self.hidden_states(tokens, Some(segments))?;
        self.logits_from_hidden(&h)
    }

    /// Logits from the final normed hidden states: the head, then the
    /// final soft-cap where the model has one (Gemma 2).
    pub fn logits_from_hidden(&mut self, h: &Array) -> Result<Array, Exception> {
        let logits = self.head_mut().forward(h)?;
        match self {
            Model::Llama(m) => m.softcap_logits(logits),
            Model::Gpt2(_) => Ok(logits),
        }
    }

    /// Whether the logits are the head's product as it is (no soft-cap),
    /// so the loss can be fused with the head.
    pub fn logits_are_plain_head(&self) -> bool {
        match self {
            Model::Llama(m) => m.final_softcap.is_none(),
            Model::Gpt2(_) => true,
        }
    }

    /// The output projection, to run it.
    pub fn head_mut(&mut self) -> &mut Projection {
        match self {
            Model::Llama(m) => m.lm_head.as_mut().unwrap_or(&mut m.model.embed_tokens),
            Model::Gpt2(m) => &mut m.transformer.wte,
        }
    }

    /// A cache sized for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.num_layers())
    }

    /// The most positions the model can see at once: GPT-2's learned
    /// position table; None for rotary models, which have no hard limit.
    pub fn max_positions(&self) -> Option<usize> {
        match self {
            Model::Llama(_) => None,
            Model::Gpt2(m) => Some(m.config.n_positions.max(1) as usize),
        }
    }

    /// `model_type` as in config.json.
    pub fn model_type(&self) -> &str {
        match self {
            Model::Llama(m) => &m.config.model_type,
            Model::Gpt2(m) => &m.config.model_type,
        }
    }

    pub fn num_layers(&self) -> usize {
        match self {
            Model::Llama(m) => m.model.layers.len(),
            Model::Gpt2(m) => m.transformer.h.len(),
        }
    }

    pub fn dims(&self) -> Dims {
        match self {
            Model::Llama(m) => Dims {
                layers: m.model.layers.len(),
                hidden: m.config.hidden_size as usize,
                intermediate: m.config.intermediate_size as usize,
                heads: m.config.num_attention_heads as usize,
                vocab: m.config.vocab_size as usize,
            },
            Model::Gpt2(m) => Dims {
                layers: m.transformer.h.len(),
                hidden: m.config.n_embd as usize,
                intermediate: m.config.inner_size() as usize,
                heads: m.config.n_head as usize,
                vocab: m.config.vocab_size as usize,
            },
        }
    }

    pub fn vocab_size(&self) -> i32 {
        match self {
            Model::Llama(m) => m.config.vocab_size,
            Model::Gpt2(m) => m.config.vocab_size,
        }
    }

    pub fn hidden_size(&self) -> i32 {
        match self {
            Model::Llama(m) => m.config.hidden_size,
            Model::Gpt2(m) => m.config.n_embd,
        }
    }

    /// Names (inside a layer) of the projections adapters can target.
    pub fn lora_targets(&self) -> &'static [&'static str] {
        match self {
            Model::Llama(m) => m.targets(),
            Model::Gpt2(_) => gpt2::TARGETS,
        }
    }

    /// The named projections of every decoder layer, first layer first.
    pub fn layer_projections_mut(&mut self) -> Vec<Vec<(&'static str, &mut Projection)>> {
        each!(self, m => m.block_projections_mut())
    }

    /// Every projection of the decoder layers.
    pub fn projections_mut(&mut self) -> impl Iterator<Item = &mut Projection> {
        self.layer_projections_mut()
            .into_iter()
            .flatten()
            .map(|(_, p)| p)
    }

    /// Every projection: decoder layers, embeddings and head.
    fn all_projections_mut(&mut self) -> Vec<&mut Projection> {
        match self {
            Model::Llama(m) => {
                let mut all: Vec<&mut Projection> = Vec::new();
                for l in &mut m.model.layers {
                    all.extend(l.projections_mut().into_iter().map(|(_, p)| p));
                }
                all.push(&mut m.model.embed_tokens);
                all.extend(m.lm_head.as_mut());
                all
            }
            Model::Gpt2(m) => {
                let t = &mut m.transformer;
                let mut all: Vec<&mut Projection> = Vec::new();
                for b in &mut t.h {
                    all.extend([
                        &mut b.attn.c_attn,
                        &mut b.attn.c_proj,
                        &mut b.mlp.c_fc,
                        &mut b.mlp.c_proj,
                    ]);
                }
                all.push(&mut t.wte);
                all.push(&mut t.wpe);
                all
            }
        }
    }

    /// Every projection, read-only (see [`Model::all_projections_mut`]).
    fn all_projections(&self) -> Vec<&Projection> {
        match self {
            Model::Llama(m) => {
                let mut all: Vec<&Projection> = Vec::new();
                for l in &m.model.layers {
                    all.extend(l.projections());
                }
                all.push(&m.model.embed_tokens);
                all.extend(m.lm_head.as_ref());
                all
            }
            Model::Gpt2(m) => {
                let t = &m.transformer;
                let mut all: Vec<&Projection> = Vec::new();
                for b in &t.h {
                    all.extend([&b.attn.c_attn, &b.attn.c_proj, &b.mlp.c_fc, &b.mlp.c_proj]);
                }
                all.extend([&t.wte, &t.wpe]);
                all
            }
        }
    }

    /// Training mode on or off for every projection (adapter dropout).
    pub fn set_training(&mut self, training: bool) {
        for p in self.projections_mut() {
            p.training = training;
        }
    }

    /// The adapters in or out of the forward pass; out, the model is the
    /// base it was loaded as (preference training's reference).
    pub fn set_adapters_enabled(&mut self, enabled: bool) {
        for p in self.projections_mut() {
            p.adapter_off = !enabled;
        }
    }

    /// Whether any decoder projection carries an adapter.
    pub fn has_lora(&mut self) -> bool {
        self.projections_mut().any(|p| p.has_lora())
    }

    /// Casts every floating-point parameter (packed quantized weights stay).
    /// Mixed precision: casts the frozen floating-point weights to `dtype`,
    /// leaving what is trained (adapters, or fully trained weights) and
    /// quantization scales as they are.
    pub fn cast_frozen_floats(&mut self, dtype: Dtype) -> Result<(), Exception> {
        let trainable: std::collections::HashSet<String> = self
            .trainable_parameters()
            .flatten()
            .keys()
            .map(|k| k.to_string())
            .collect();
        for (key, p) in self.parameters_mut().flatten() {
            let scales = key.ends_with(".scales") || key.ends_with(".biases");
            if !trainable.contains(&*key) && !scales && p.dtype().is_float() && p.dtype() != dtype {
                *p = p.as_dtype(dtype)?;
            }
        }
        Ok(())
    }

    pub fn cast_floats(&mut self, dtype: Dtype) -> Result<(), Exception> {
        for (_, p) in self.parameters_mut().flatten() {
            if p.dtype().is_float() && p.dtype() != dtype {
                *p = p.as_dtype(dtype)?;
            }
        }
        Ok(())
    }

    /// Evaluates every parameter (see `model::load`).
    pub fn eval_parameters(&self) -> Result<(), Exception> {
        let params = self.parameters().flatten();
        mlx_rs::transforms::eval(params.values().copied())
    }

    /// Makes every quantized weight dense (embeddings and head included).
    pub fn dequantize(&mut self) -> Result<(), Exception> {
        for p in self.all_projections_mut() {
            p.dequantize()?;
        }
        Ok(())
    }

    /// How many projections (embeddings and head included) are quantized,
    /// of how many: a GGUF of mixed types keeps some packed, dequantizes
    /// the rest.
    pub fn quantized_projections(&self) -> (usize, usize) {
        let all = self.all_projections();
        let packed = all.iter().filter(|p| p.quantization.is_some()).count();
        (packed, all.len())
    }

    /// How the decoder's weights are quantized (None when dense).
    pub fn quantization(&self) -> Option<super::projection::Quantization> {
        self.all_projections().iter().find_map(|p| p.quantization)
    }

    /// Quantizes every dense projection, embeddings and head included.
    pub fn quantize(
        &mut self,
        quantization: super::projection::Quantization,
    ) -> Result<(), Exception> {
        for p in self.all_projections_mut() {
            p.quantize(quantization)?;
        }
        Ok(())
    }

    /// Scalars in the base model, quantized weights counted as the dense
    /// matrices they stand for, adapters excluded.
    pub fn parameter_count(&self) -> usize {
        let stored: usize = self
            .parameters()
            .flatten()
            .iter()
            .filter(|(k, _)| !k.ends_with(".lora_a") && !k.ends_with(".lora_b"))
            .map(|(_, a)| a.size())
            .sum();
        let packed_to_dense: isize = self
            .all_projections()
            .into_iter()
            .filter(|p| p.quantization.is_some())
            .map(|p| {
                let packed = p.weight.size()
                    + p.scales.value.as_ref().map_or(0, |a| a.size())
                    + p.biases.value.as_ref().map_or(0, |a| a.size());
                (p.output_dims() as isize * p.input_dims() as isize) - packed as isize
            })
            .sum();
        (stored as isize + packed_to_dense) as usize
    }

    /// The `config.json` transformers needs to load [`Model::hf_tensors`].
    pub fn hf_config(&self) -> serde_json::Value {
        match self {
            Model::Llama(m) => {
                let architecture = super::architecture::by_model_type(&m.config.model_type)
                    .map_or("LlamaForCausalLM", |a| a.hf_class);
                let mut config = serde_json::to_value(&m.config).expect("serializable");
                config["architectures"] = json!([architecture]);
                config["tie_word_embeddings"] = json!(m.lm_head.is_none());
                config
            }
            Model::Gpt2(m) => {
                let mut config = serde_json::to_value(&m.config).expect("serializable");
                config["architectures"] = json!(["GPT2LMHeadModel"]);
                config
            }
        }
    }

    /// Parameters by their Hugging Face names and layouts (GPT-2's
    /// projections go back to `Conv1D`'s (in, out)). Call on a dense model.
    pub fn hf_tensors(&self) -> Vec<(String, Array)> {
        let conv1d = matches!(self, Model::Gpt2(_));
        self.parameters()
            .flatten()
            .into_iter()
            .map(|(name, array)| {
                let is_conv1d = conv1d
                    && name.ends_with(".weight")
                    && (name.contains(".attn.") || name.contains(".mlp."));
                let array = if is_conv1d { array.t() } else { array.clone() };
                (name.to_string(), array)
            })
            .collect()
    }
}
