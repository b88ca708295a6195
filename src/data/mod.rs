//! Datasets: reading records from files and turning them into token ids
//! with a mask of the tokens to train on.

pub mod records;
pub mod tokenize;

pub use records::{read_records, Record};
pub use tokenize::{tokenize_record, Example, MaskPolicy};
