//! Text generation with a KV cache: greedy or temperature / top-p sampling,
//! stop tokens, and the new text streamed through a callback.

use std::time::Instant;

use mlx_rs::Array;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

use crate::error::Result;
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// How to pick each next token.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Sample from the smallest set of tokens whose probability reaches this.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// What a generation produced, with measured speeds.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Whether a stop token ended it (rather than `max_tokens`).
    pub stopped: bool,
    pub prompt_seconds: f64,
    pub generate_seconds: f64,
    pub tokens_per_second: f64,
}

/// Continues `prompt` (token ids); `on_text` receives each new piece of text.
pub fn generate(
    model: &mut Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    options: &GenerateOptions,
    mut on_text: impl FnMut(&str),
) -> Result<Generation> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut cache = model.new_cache();
    let start = Instant::now();
    let input = Array::from_slice(
        &prompt.iter().map(|&t| t as i32).collect::<Vec<_>>(),
        &[1, prompt.len() as i32],
    );
    let mut logits = last_logits(model.forward(&input, Some(&mut cache))?)?;
    let prompt_seconds = start.elapsed().as_secs_f64();

    let gen_start = Instant::now();
    let mut generated: Vec<u32> = Vec::new();
    let mut emitted = String::new();
    let mut stopped = false;
    while generated.len() < options.max_tokens {
        let next = pick(&logits, options, &mut rng);
        if tokenizer.stop_ids.contains(&next) {
            stopped = true;
            break;
        }
        generated.push(next);
        // Decode everything so far: a character may span several tokens.
        let text = tokenizer.decode(&generated)?;
        if text.len() > emitted.len() && !text.ends_with('\u{FFFD}') {
            on_text(&text[emitted.len()..]);
            emitted = text;
        }
        if generated.len() == options.max_tokens {
            break;
        }
        let input = Array::from_slice(&[next as i32], &[1, 1]);
        logits = last_logits(model.forward(&input, Some(&mut cache))?)?;
    }
    let text = tokenizer.decode(&generated)?;
    if text.len() > emitted.len() {
        on_text(&text[emitted.len()..]);
    }
    let generate_seconds = gen_start.elapsed().as_secs_f64();
    Ok(Generation {
        prompt_tokens: prompt.len(),
        generated_tokens: generated.len(),
        stopped,
        prompt_seconds,
        generate_seconds,
        tokens_per_second: generated.len() as f64 / generate_seconds.max(1e-9),
        text,
    })
}

/// The last position's logits as f32 on the host.
pub(crate) fn last_logits(logits: Array) -> Result<Vec<f32>> {
    let shape = logits.shape().to_vec();
    let (l, v) = (shape[1], shape[2]);
    let last = logits
        .reshape(&[l, v])?
        .take_axis(Array::from_int(l - 1), 0)?
        .as_dtype(mlx_rs::Dtype::Float32)?;
    last.eval()?;
    Ok(last.as_slice::<f32>().to_vec())
}

/// Greedy, or temperature + nucleus sampling.
pub fn pick(logits: &[f32], options: &GenerateOptions, rng: &mut impl Rng) -> u32 {
    if options.temperature <= 0.0 {
        return argmax(logits);
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l - max) / options.temperature).exp()))
        .collect();
    let total: f32 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= total);
    if options.top_p < 1.0 {
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut mass = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                mass += p.1;
                mass >= options.top_p
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
    }
    let total: f32 = probs.iter().map(|p| p.1).sum();
    let mut r = rng.random::<f32>() * total;
    for (id, p) in &probs {
        r -= p;
        if r <= 0.0 {
            return *id;
        }
    }
    probs.last().map_or(0, |p| p.0)
}

fn argmax(values: &[f32]) -> u32 {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i as u32)
}

/// `count` sampled continuations of one prompt, decoded side by side (one
/// batch of `count` rows over one KV cache): each row's tokens, up to and
/// including the stop token that ended it, and whether one did. Row `i`
/// draws from its own generator seeded by `seed + i`, so a group is the
/// same whatever else runs.
pub fn sample_group(
    model: &mut Model,
    stop_ids: &[u32],
    prompt: &[u32],
    count: usize,
    options: &GenerateOptions,
) -> Result<Vec<(Vec<u32>, bool)>> {
    let mut rngs: Vec<StdRng> = (0..count)
        .map(|i| StdRng::seed_from_u64(options.seed.wrapping_add(i as u64)))
        .collect();
    let mut cache = model.new_cache();
    let ids: Vec<i32> = prompt.iter().map(|&t| t as i32).collect();
    let one = Array::from_slice(&ids, &[1, ids.len() as i32]);
    let rows = mlx_rs::ops::broadcast_to(&one, &[count as i32, ids.len() as i32])?;
    let mut logits = rows_last_logits(model.forward(&rows, Some(&mut cache))?)?;
    let mut out: Vec<(Vec<u32>, bool)> = vec![(Vec::new(), false); count];
    for step in 0..options.max_tokens {
        let vocab = logits.len() / count;
        let mut next = Vec::with_capacity(count);
        for (i, (tokens, stopped)) in out.iter_mut().enumerate() {
            if *stopped {
                // A finished row keeps a place in the batch; its tokens are dropped.
                next.push(stop_ids.first().copied().unwrap_or(0) as i32);
                continue;
            }
            let id = pick(&logits[i * vocab..(i + 1) * vocab], options, &mut rngs[i]);
            tokens.push(id);
            *stopped = stop_ids.contains(&id);
            next.push(id as i32);
        }
        if out.iter().all(|(_, stopped)| *stopped) || step + 1 == options.max_tokens {
            break;
        }
        let input = Array::from_slice(&next, &[count as i32, 1]);
        logits = rows_last_logits(model.forward(&input, Some(&mut cache))?)?;
    }
    Ok(out)
}

/// Every row's last-position logits as f32 on the host, row after row.
fn rows_last_logits(logits: Array) -> Result<Vec<f32>> {
    let shape = logits.shape().to_vec();
    let (b, l, v) = (shape[0], shape[1], shape[2]);
    let last = logits
        .take_axis(Array::from_int(l - 1), 1)?
        .reshape(&[b, v])?
        .as_dtype(mlx_rs::Dtype::Float32)?;
    last.eval()?;
    Ok(last.as_slice::<f32>().to_vec())
}
