//! The Llama-family architectures FineTune runs, one entry each: what
//! `config.json` calls it, what transformers calls its class, what GGUF
//! calls it, and which of the shared decoder's switches it turns on.
//! Adding an architecture of this family is one entry here (plus, when it
//! brings a new block, that block in `llama.rs`).

/// One architecture of the Llama family.
#[derive(Debug, Clone, Copy)]
pub struct Architecture {
    /// `model_type` in config.json.
    pub model_type: &'static str,
    /// transformers' class, written into exported config.json files.
    pub hf_class: &'static str,
    /// `general.architecture` in GGUF files.
    pub gguf: &'static str,
    /// RMSNorm of each head's queries and keys (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Gemma's conventions: `(1 + w)` norms, sandwich norms around the
    /// attention and the MLP, embeddings scaled by √hidden, GELU gating.
    pub gemma: bool,
    /// llama.cpp stores q/k rows permuted for its RoPE (Llama, Mistral).
    pub gguf_permuted_qk: bool,
    /// q/k/v in one `qkv_proj`, gate and up in one `gate_up_proj` (Phi-3).
    pub fused_projections: bool,
}

pub const ARCHITECTURES: &[Architecture] = &[
    Architecture {
        model_type: "llama",
        hf_class: "LlamaForCausalLM",
        gguf: "llama",
        qk_norm: false,
        gemma: false,
        gguf_permuted_qk: true,
        fused_projections: false,
    },
    Architecture {
        model_type: "mistral",
        hf_class: "MistralForCausalLM",
        gguf: "mistral",
        qk_norm: false,
        gemma: false,
        gguf_permuted_qk: true,
        fused_projections: false,
    },
    Architecture {
        model_type: "qwen2",
        hf_class: "Qwen2ForCausalLM",
        gguf: "qwen2",
        qk_norm: false,
        gemma: false,
        gguf_permuted_qk: false,
        fused_projections: false,
    },
    Architecture {
        model_type: "qwen3",
        hf_class: "Qwen3ForCausalLM",
        gguf: "qwen3",
        qk_norm: true,
        gemma: false,
        gguf_permuted_qk: false,
        fused_projections: false,
    },
    Architecture {
        model_type: "gemma2",
        hf_class: "Gemma2ForCausalLM",
        gguf: "gemma2",
        qk_norm: false,
        gemma: true,
        gguf_permuted_qk: false,
        fused_projections: false,
    },
    Architecture {
        model_type: "gemma3_text",
        hf_class: "Gemma3ForCausalLM",
        gguf: "gemma3",
        qk_norm: true,
        gemma: true,
        gguf_permuted_qk: false,
        fused_projections: false,
    },
    Architecture {
        model_type: "phi3",
        hf_class: "Phi3ForCausalLM",
        gguf: "phi3",
        qk_norm: false,
        gemma: false,
        gguf_permuted_qk: false,
        fused_projections: true,
    },
];

/// The architecture of a `model_type`.
pub fn by_model_type(model_type: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|a| a.model_type == model_type)
}

/// The architecture of a GGUF `general.architecture`.
pub fn by_gguf_name(name: &str) -> Option<&'static Architecture> {
    ARCHITECTURES
        .iter()
        .find(|a| !a.gguf.is_empty() && a.gguf == name)
}
