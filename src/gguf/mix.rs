//! Which GGML type each tensor gets in a file type ("Q4_K_M"), as
//! llama.cpp's `llama-quantize` chooses it (`llama_tensor_get_type` in
//! src/llama-quant.cpp, llama-cpp-python 0.3.36's llama.cpp) without an
//! importance matrix, overrides or `--pure`.
//!
//! The choice depends on the order tensors are visited in: attn_v and
//! ffn_down get more bits in some layers, counted by how many were seen
//! before. llama.cpp visits them sorted by layer number (tensors outside a
//! block first), then by name; [`llama_order`] gives that order and
//! [`tensor_types`] follows it whatever order it is given.

use super::GgmlType;

/// A llama.cpp file type (`general.file_type`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
}

/// (file type, llama_ftype id, name, default tensor type).
const FILE_TYPES: [(FileType, u32, &str, GgmlType); 17] = {
    use FileType as F;
    use GgmlType as G;
    [
        (F::F32, 0, "F32", G::F32),
        (F::F16, 1, "F16", G::F16),
        (F::BF16, 32, "BF16", G::BF16),
        (F::Q4_0, 2, "Q4_0", G::Q4_0),
        (F::Q4_1, 3, "Q4_1", G::Q4_1),
        (F::Q5_0, 8, "Q5_0", G::Q5_0),
        (F::Q5_1, 9, "Q5_1", G::Q5_1),
        (F::Q8_0, 7, "Q8_0", G::Q8_0),
        (F::Q2_K, 10, "Q2_K", G::Q2_K),
        (F::Q3_K_S, 11, "Q3_K_S", G::Q3_K),
        (F::Q3_K_M, 12, "Q3_K_M", G::Q3_K),
        (F::Q3_K_L, 13, "Q3_K_L", G::Q3_K),
        (F::Q4_K_S, 14, "Q4_K_S", G::Q4_K),
        (F::Q4_K_M, 15, "Q4_K_M", G::Q4_K),
        (F::Q5_K_S, 16, "Q5_K_S", G::Q5_K),
        (F::Q5_K_M, 17, "Q5_K_M", G::Q5_K),
        (F::Q6_K, 18, "Q6_K", G::Q6_K),
    ]
};

impl FileType {
    fn entry(self) -> &'static (FileType, u32, &'static str, GgmlType) {
        FILE_TYPES
            .iter()
            .find(|e| e.0 == self)
            .expect("every file type is listed")
    }

    /// The value of `general.file_type` (llama_ftype).
    pub fn id(self) -> u32 {
        self.entry().1
    }

    /// llama-quantize's name ("Q4_K_M").
    pub fn name(self) -> &'static str {
        self.entry().2
    }

    /// The type most tensors get.
    pub fn default_type(self) -> GgmlType {
        self.entry().3
    }

    /// The file type named `name` (any case: "q4_k_m").
    pub fn from_name(name: &str) -> Option<FileType> {
        FILE_TYPES
            .iter()
            .find(|e| e.2.eq_ignore_ascii_case(name))
            .map(|e| e.0)
    }

    /// Every file type, for messages.
    pub fn all() -> impl Iterator<Item = FileType> {
        FILE_TYPES.iter().map(|e| e.0)
    }
}

/// What the choice needs to know of the model.
#[derive(Debug, Clone)]
pub struct ModelInfo<'a> {
    /// `general.architecture` ("llama", "gemma3", "falcon").
    pub arch: &'a str,
    /// Blocks (`*.block_count`).
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Experts (0 or 1 for a dense model).
    pub n_expert: usize,
    /// Whether llama.cpp would call the model a 70B (its attn_v gets Q5_K
    /// where Q3_K or Q4_K was chosen).
    pub is_70b: bool,
}

/// One tensor as the file will hold it, llama.cpp's name and GGUF dims
/// (`dims[0]` is the row length).
#[derive(Debug, Clone)]
pub struct TensorDesc<'a> {
    pub name: &'a str,
    pub dims: &'a [u64],
    /// Its type before quantization; tensors llama-quantize does not
    /// quantize (norms, 1-D tensors, ...) keep it.
    pub source: GgmlType,
}

/// The block number in "blk.N.…", as llama.cpp's `sscanf("blk.%d.")`
/// reads it (None when the name is outside a block).
fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let n = rest[..digits].parse().ok()?;
    rest[digits..].starts_with('.').then_some(n)
}

/// The order llama-quantize visits (and writes) tensors in: by layer, the
/// tensors outside blocks first, then by name (byte order).
pub fn llama_order(names: &[&str]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..names.len()).collect();
    idx.sort_by(|&a, &b| {
        let la = layer_of(names[a]).unwrap_or(-1);
        let lb = layer_of(names[b]).unwrap_or(-1);
        la.cmp(&lb)
            .then_with(|| names[a].as_bytes().cmp(names[b].as_bytes()))
    });
    idx
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    Output,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Other,
}

/// llama.cpp's tensor_get_category (substring tests, first match wins).
fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        return Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return TokenEmbd;
    }
    for (pat, c) in [
        ("attn_qkv.weight", AttnQkv),
        ("attn_kv_b.weight", AttnKvB),
        ("attn_v.weight", AttnV),
        ("attn_k.weight", AttnK),
        ("attn_q.weight", AttnQ),
        ("attn_output.weight", AttnOutput),
        ("ffn_up", FfnUp),
        ("ffn_gate", FfnGate),
        ("ffn_down", FfnDown),
    ] {
        if name.contains(pat) {
            return c;
        }
    }
    Other
}

/// llama.cpp's tensor_allows_quantization: 2-D and larger tensors whose
/// name ends in "weight", except norms, routers, small special tables.
fn allows_quantization(t: &TensorDesc) -> bool {
    // ggml_n_dims: trailing dims of 1 do not count.
    let n_dims = t.dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
    if n_dims < 2 {
        return false;
    }
    let name = t.name;
    if !name.ends_with("weight") || name.contains("_norm.weight") {
        return false;
    }
    const NEVER: [&str; 33] = [
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
    ];
    if NEVER.iter().any(|p| name.contains(p)) || name.contains("mm.a.code_embd") {
        return false;
    }
    name != "position_embd.weight" && name != "token_types.weight"
}

/// llama.cpp's tensor_type_fallback: a type whose block does not divide
/// the row length gives way to a 32-block type, or F16.
fn fallback(row_len: u64, ty: GgmlType) -> GgmlType {
    use GgmlType::*;
    if row_len % ty.block_size() as u64 == 0 {
        return ty;
    }
    let to = match ty {
        Q2_K | Q3_K => Q4_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        t => t,
    };
    if row_len % to.block_size() as u64 == 0 {
        to
    } else {
        F16
    }
}

/// The type of every tensor of `tensors` (in the order given) in a file of
/// type `ftype`, as llama-quantize would choose it.
pub fn tensor_types(
    ftype: FileType,
    model: &ModelInfo,
    tensors: &[TensorDesc],
) -> Result<Vec<GgmlType>, String> {
    use Category as C;
    use FileType as F;
    use GgmlType as G;
    let default = ftype.default_type();
    let quantized = default.block_size() > 1;
    let falcon = model.arch == "falcon";
    let n_expert = model.n_expert.max(1);
    // hparams.n_gqa(): 0 when there are no KV heads.
    let n_gqa = model.n_head.checked_div(model.n_head_kv).unwrap_or(0);
    let n_layer = model.n_layer as i64;
    let tied = !tensors.iter().any(|t| t.name == "output.weight");
    let n_attention_wv = tensors
        .iter()
        .filter(|t| matches!(category(t.name), C::AttnV | C::AttnQkv | C::AttnKvB))
        .count() as i64;
    let use_more_bits = |i: i64, n: i64| i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
    let (mut i_attention_wv, mut i_ffn_down, mut i_ffn_gate, mut i_ffn_up) = (0i64, 0, 0, 0);
    // The layer of an FFN tensor: its visit count in a dense model, its
    // name's block number in a mixture of experts.
    let layer = |counter: i64, name: &str| -> Result<i64, String> {
        if n_expert > 1 {
            match layer_of(name) {
                Some(l) if (0..n_layer).contains(&l) => Ok(l),
                _ => Err(format!("cannot tell the layer of {name} (0..{n_layer})")),
            }
        } else {
            Ok(counter)
        }
    };

    let names: Vec<&str> = tensors.iter().map(|t| t.name).collect();
    let mut out = vec![G::F32; tensors.len()];
    for i in llama_order(&names) {
        let t = &tensors[i];
        if !allows_quantization(t) {
            out[i] = t.source;
            continue;
        }
        let mut ty = default;
        if quantized {
            let cat = category(t.name);
            let nx = t.dims[0];
            if cat == C::Output || (tied && cat == C::TokenEmbd) {
                if falcon || nx % ty.block_size() as u64 != 0 {
                    ty = G::Q8_0;
                } else if ty != G::Q8_0 {
                    ty = G::Q6_K;
                }
            } else if cat == C::TokenEmbd {
                // Only the IQ and ternary file types change it.
            } else if matches!(cat, C::AttnV | C::AttnQkv | C::AttnKvB) {
                match ftype {
                    F::Q2_K => ty = if n_gqa >= 4 { G::Q4_K } else { G::Q3_K },
                    F::Q3_K_M => ty = if i_attention_wv < 2 { G::Q5_K } else { G::Q4_K },
                    F::Q3_K_L => ty = G::Q5_K,
                    F::Q4_K_M | F::Q5_K_M if use_more_bits(i_attention_wv, n_attention_wv) => {
                        ty = G::Q6_K
                    }
                    F::Q4_K_S if i_attention_wv < 4 => ty = G::Q5_K,
                    _ => {}
                }
                if model.is_70b && (ty == G::Q3_K || ty == G::Q4_K) {
                    ty = G::Q5_K;
                }
                if model.n_expert == 8 {
                    ty = G::Q8_0;
                }
                i_attention_wv += 1;
            } else if cat == C::AttnK {
                if model.n_expert == 8 {
                    ty = G::Q8_0;
                }
            } else if cat == C::AttnQ {
                // Only IQ3 file types change it.
            } else if cat == C::FfnDown {
                let l = layer(i_ffn_down, t.name)?;
                match ftype {
                    F::Q2_K => ty = G::Q3_K,
                    F::Q3_K_M => {
                        ty = if l < n_layer / 16 {
                            G::Q5_K
                        } else if !falcon || use_more_bits(l, n_layer) {
                            G::Q4_K
                        } else {
                            G::Q3_K
                        }
                    }
                    F::Q3_K_L => ty = if falcon { G::Q4_K } else { G::Q5_K },
                    F::Q4_K_M => {
                        if falcon {
                            ty = if l < n_layer / 16 {
                                G::Q6_K
                            } else if use_more_bits(l, n_layer) {
                                G::Q5_K
                            } else {
                                G::Q4_K
                            };
                        } else if use_more_bits(l, n_layer) {
                            ty = G::Q6_K;
                        }
                    }
                    F::Q5_K_M if use_more_bits(l, n_layer) => ty = G::Q6_K,
                    F::Q4_K_S if !falcon && l < n_layer / 8 => ty = G::Q5_K,
                    _ => {}
                }
                i_ffn_down += 1;
            } else if cat == C::AttnOutput {
                if !falcon {
                    if model.n_expert == 8 {
                        if matches!(
                            ftype,
                            F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M
                        ) {
                            ty = G::Q5_K;
                        }
                    } else {
                        match ftype {
                            F::Q2_K => ty = G::Q3_K,
                            F::Q3_K_M => ty = G::Q4_K,
                            F::Q3_K_L => ty = G::Q5_K,
                            _ => {}
                        }
                    }
                } else if ftype == F::Q3_K_L {
                    ty = G::Q4_K;
                }
            } else if cat == C::FfnGate {
                layer(i_ffn_gate, t.name)?;
                i_ffn_gate += 1;
            } else if cat == C::FfnUp {
                layer(i_ffn_up, t.name)?;
                i_ffn_up += 1;
            }
            // (llama.cpp has a rule of its own for attn_qkv too, but checks it
            // after attn_v's, which already took attn_qkv: it never applies.)
            ty = fallback(nx, ty);
        }
        out[i] = ty;
    }
    Ok(out)
}
