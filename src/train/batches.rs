//! Batches: examples sorted by length so a batch pads little, padded to a
//! multiple of 32, in an order reshuffled each epoch from the seed.

use mlx_rs::Array;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use crate::data::Example;

/// Padding granularity (keeps shapes few, so MLX reuses kernels and buffers).
pub const PAD_MULTIPLE: usize = 32;

/// Inputs, next-token targets and the loss mask of one batch.
pub struct Batch {
    pub inputs: Array,
    pub targets: Array,
    pub mask: Array,
    pub trained_tokens: usize,
}

/// Groups of example indices, each one batch, by ascending length.
pub fn length_sorted_groups(examples: &[Example], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| (examples[i].tokens.len(), i));
    order
        .chunks(batch_size)
        .filter(|c| c.len() == batch_size)
        .map(<[usize]>::to_vec)
        .collect()
}

/// The order batches are visited in during `epoch` (deterministic per seed).
pub fn epoch_order(groups: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..groups).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

/// Builds the arrays for the examples at `indices`; `pad_id` fills the tail.
pub fn make_batch(examples: &[Example], indices: &[usize], pad_id: u32) -> Batch {
    let longest = indices
        .iter()
        .map(|&i| examples[i].tokens.len())
        .max()
        .unwrap_or(1);
    // Inputs are tokens[..n-1]; round their length up.
    let width = (longest.saturating_sub(1)).div_ceil(PAD_MULTIPLE).max(1) * PAD_MULTIPLE;
    let rows = indices.len();
    let mut inputs = vec![pad_id as i32; rows * width];
    let mut targets = vec![pad_id as i32; rows * width];
    let mut mask = vec![0f32; rows * width];
    let mut trained_tokens = 0;
    for (row, &i) in indices.iter().enumerate() {
        let e = &examples[i];
        for pos in 0..e.tokens.len().saturating_sub(1) {
            inputs[row * width + pos] = e.tokens[pos] as i32;
            targets[row * width + pos] = e.tokens[pos + 1] as i32;
            if e.trained[pos + 1] {
                mask[row * width + pos] = 1.0;
                trained_tokens += 1;
            }
        }
    }
    let shape = [rows as i32, width as i32];
    Batch {
        inputs: Array::from_slice(&inputs, &shape),
        targets: Array::from_slice(&targets, &shape),
        mask: Array::from_slice(&mask, &shape),
        trained_tokens,
    }
}
