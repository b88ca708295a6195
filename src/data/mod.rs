//! Datasets: reading records from files and turning them into token ids
//! with a mask of the tokens to train on.

pub mod records;
pub mod stats;
pub mod tokenize;

pub use records::{read_records, Record};
pub use stats::DatasetStats;
pub use tokenize::{preview, tokenize_file, tokenize_record, Example, MaskPolicy, TokenizedFile};
