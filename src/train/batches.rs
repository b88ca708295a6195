//! Batches: examples sorted by length so a batch pads little, padded to a
//! small multiple, in an order reshuffled each epoch from the seed; or,
//! with packing, several examples per row, attention kept inside each.

use mlx_rs::Array;
use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use crate::data::ExampleSource;
use crate::error::Result;

/// Padding granularity: a compiled step is traced once per batch shape, so
/// it pads to 32 to keep the shapes few; otherwise to 8, which computes
/// fewer padding positions (a CPU step's cost grows with every one).
pub fn pad_multiple(compiled_step: bool) -> usize {
    if compiled_step {
        32
    } else {
        8
    }
}

/// One row of a batch: the indices of the examples it holds (one, or
/// several when packed).
pub type Row = Vec<usize>;

/// Inputs, next-token targets and the loss mask of one batch.
pub struct Batch {
    pub inputs: Array,
    pub targets: Array,
    pub mask: Array,
    /// Which example each position belongs to (B, L), when rows are packed.
    pub segments: Option<Array>,
    pub trained_tokens: usize,
}

/// Positions example `i` fills in a row (its inputs are tokens[..n-1]),
/// from the index (without reading it).
fn positions<S: ExampleSource + ?Sized>(examples: &S, i: usize) -> usize {
    examples.example_len(i).saturating_sub(1)
}

/// Batches of one example per row, by ascending length.
pub fn length_sorted_groups<S: ExampleSource + ?Sized>(
    examples: &S,
    batch_size: usize,
) -> Vec<Vec<Row>> {
    let mut order: Vec<usize> = (0..examples.example_count()).collect();
    order.sort_by_key(|&i| (examples.example_len(i), i));
    order
        .chunks(batch_size)
        .filter(|c| c.len() == batch_size)
        .map(|c| c.iter().map(|&i| vec![i]).collect())
        .collect()
}

/// Packs examples into rows of at most `capacity` positions (first fit,
/// longest first), then batches the rows by ascending fill.
pub fn packed_groups<S: ExampleSource + ?Sized>(
    examples: &S,
    batch_size: usize,
    capacity: usize,
) -> Vec<Vec<Row>> {
    let mut order: Vec<usize> = (0..examples.example_count()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(positions(examples, i)), i));
    let mut rows: Vec<(usize, Row)> = Vec::new();
    for i in order {
        let need = positions(examples, i).min(capacity);
        match rows.iter_mut().find(|(used, _)| used + need <= capacity) {
            Some((used, row)) => {
                *used += need;
                row.push(i);
            }
            None => rows.push((need, vec![i])),
        }
    }
    rows.sort_by_key(|(used, row)| (*used, row[0]));
    rows.into_iter()
        .map(|(_, row)| row)
        .collect::<Vec<_>>()
        .chunks(batch_size)
        .filter(|c| c.len() == batch_size)
        .map(<[Row]>::to_vec)
        .collect()
}

/// The order batches are visited in during `epoch` (deterministic per seed).
pub fn epoch_order(groups: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..groups).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

/// The padded length of the batch made of `rows`: its longest row rounded
/// up to a multiple of `multiple`.
pub fn padded_width<S: ExampleSource + ?Sized>(
    examples: &S,
    rows: &[Row],
    multiple: usize,
) -> usize {
    let longest = rows
        .iter()
        .map(|r| r.iter().map(|&i| positions(examples, i)).sum::<usize>())
        .max()
        .unwrap_or(1);
    longest.div_ceil(multiple).max(1) * multiple
}

/// Builds the arrays for `rows`, each padded by `pad_id` to the batch's
/// [`padded_width`] (panics when an example cannot be read back: see
/// [`try_make_batch`]).
pub fn make_batch<S: ExampleSource + ?Sized>(
    examples: &S,
    rows: &[Row],
    pad_id: u32,
    multiple: usize,
) -> Batch {
    try_make_batch(examples, rows, pad_id, multiple).expect("reading the batch's examples")
}

/// [`make_batch`], reading only the batch's examples (from disk for a
/// tokenized file).
pub fn try_make_batch<S: ExampleSource + ?Sized>(
    examples: &S,
    rows: &[Row],
    pad_id: u32,
    multiple: usize,
) -> Result<Batch> {
    let width = padded_width(examples, rows, multiple);
    let n = rows.len();
    let mut inputs = vec![pad_id as i32; n * width];
    let mut targets = vec![pad_id as i32; n * width];
    let mut mask = vec![0f32; n * width];
    // Padding is a segment of its own, so packed examples never see it.
    let mut segments = vec![-1i32; n * width];
    let packed = rows.iter().any(|r| r.len() > 1);
    let mut trained_tokens = 0;
    for (row, indices) in rows.iter().enumerate() {
        let mut at = row * width;
        for (segment, &i) in indices.iter().enumerate() {
            let e = examples.example(i)?;
            let room = (row + 1) * width - at;
            for pos in 0..positions(examples, i).min(room) {
                inputs[at] = e.tokens[pos] as i32;
                targets[at] = e.tokens[pos + 1] as i32;
                segments[at] = segment as i32;
                if e.trained[pos + 1] {
                    mask[at] = 1.0;
                    trained_tokens += 1;
                }
                at += 1;
            }
        }
    }
    let shape = [n as i32, width as i32];
    Ok(Batch {
        inputs: Array::from_slice(&inputs, &shape),
        targets: Array::from_slice(&targets, &shape),
        mask: Array::from_slice(&mask, &shape),
        segments: packed.then(|| Array::from_slice(&segments, &shape)),
        trained_tokens,
    })
}
