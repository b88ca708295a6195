//! What a dataset holds once tokenized: counts, lengths, truncation — the
//! numbers `ft data inspect` prints and the app shows before training.

use serde::{Deserialize, Serialize};

#[cfg(test)]
use super::Example;
use super::ExampleSource;

/// Summary of tokenized examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    pub records: usize,
    pub total_tokens: usize,
    pub trained_tokens: usize,
    pub truncated: usize,
    pub min_length: usize,
    pub max_length: usize,
    pub mean_length: f64,
    /// Examples per length bucket: `(upper bound in tokens, count)`, bounds
    /// doubling from 32.
    pub length_histogram: Vec<(usize, usize)>,
}

impl DatasetStats {
    /// From the examples' index (no example is read).
    pub fn of<S: ExampleSource + ?Sized>(examples: &S) -> Self {
        let n = examples.example_count();
        let lengths: Vec<usize> = (0..n).map(|i| examples.example_len(i)).collect();
        let total_tokens: usize = lengths.iter().sum();
        let max_length = lengths.iter().copied().max().unwrap_or(0);
        let mut histogram = Vec::new();
        let mut bound = 32;
        loop {
            let lower = if histogram.is_empty() { 0 } else { bound / 2 };
            let count = lengths.iter().filter(|&&l| l > lower && l <= bound).count();
            histogram.push((bound, count));
            if bound >= max_length {
                break;
            }
            bound *= 2;
        }
        Self {
            records: n,
            total_tokens,
            trained_tokens: (0..n).map(|i| examples.example_trained(i)).sum(),
            truncated: (0..n).filter(|&i| examples.example_truncated(i)).count(),
            min_length: lengths.iter().copied().min().unwrap_or(0),
            max_length,
            mean_length: total_tokens as f64 / n.max(1) as f64,
            length_histogram: histogram,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(len: usize, trained: usize, truncated: bool) -> Example {
        Example {
            tokens: vec![0; len],
            trained: (0..len).map(|i| i >= len - trained).collect(),
            truncated,
        }
    }

    #[test]
    fn counts_tokens_lengths_and_buckets() {
        let stats = DatasetStats::of(&vec![
            example(10, 4, false),
            example(40, 10, false),
            example(100, 1, true),
        ]);
        assert_eq!(stats.records, 3);
        assert_eq!(stats.total_tokens, 150);
        assert_eq!(stats.trained_tokens, 15);
        assert_eq!(stats.truncated, 1);
        assert_eq!((stats.min_length, stats.max_length), (10, 100));
        assert_eq!(stats.mean_length, 50.0);
        assert_eq!(stats.length_histogram, vec![(32, 1), (64, 1), (128, 1)]);
    }
}
