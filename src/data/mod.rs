//! Datasets: reading records from files in the common formats and shapes,
//! choosing a chat template, and turning records into token ids with a mask
//! of the tokens to train on.

pub mod cache;
pub mod examples;
pub mod formats;
pub mod json_stream;
pub mod preference;
pub mod prompts;
pub mod records;
pub mod stats;
pub mod templates;
pub mod tokenize;

pub use examples::{ExampleSource, Examples};
pub use preference::{Pair, Side};
pub use records::{
    read_records, split_file, train_file, valid_file, OnBadRecord, ReadOptions, Record, RecordSet,
    RecordStream, Skipped,
};
pub use stats::DatasetStats;
pub use tokenize::{
    preview, split_examples, split_pairs, tokenize_file, tokenize_record, Example, MaskPolicy,
    Tokenization, TokenizedFile,
};
