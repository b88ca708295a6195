//! Data pipeline speed: parse + template + tokenize a chat file with the
//! default model's tokenizer and chat template, then the same again from
//! the tokenization cache. Prints records/s and tokens/s.
//!
//!     cargo run --release --example bench_data -- DATA [MODEL]

use std::time::Instant;

use finetune::data::{MaskPolicy, OnBadRecord, ReadOptions, Tokenization};
use finetune::model::{self, LoadOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let data = args.next().expect("usage: bench_data DATA [MODEL]");
    let model_path = args
        .next()
        .map(Into::into)
        .unwrap_or_else(finetune::paths::default_model);
    let loaded = model::load(&model_path, &LoadOptions::default()).unwrap();
    let tokenization = Tokenization {
        template: loaded.chat_template.as_ref(),
        tokenizer: &loaded.tokenizer,
        policy: MaskPolicy::Completions,
        // Long enough that nothing is cut: every token is counted.
        max_length: 1 << 20,
    };
    let read = ReadOptions {
        on_bad_record: OnBadRecord::Skip,
        ..Default::default()
    };
    let cache = tempfile_dir();
    println!(
        "{} on {} threads (rayon)",
        data,
        rayon::current_num_threads()
    );
    for pass in [
        "first run (parse, template, tokenize)",
        "second run (cache)",
    ] {
        let start = Instant::now();
        let file = tokenization
            .file(data.as_ref(), &read, Some(&cache))
            .unwrap();
        let seconds = start.elapsed().as_secs_f64();
        let tokens: usize = file.examples.iter().map(|e| e.tokens.len()).sum();
        let records = file.examples.len() + file.skipped_empty;
        println!(
            "{pass}: {records} records ({} skipped), {tokens} tokens in {seconds:.2} s → {:.0} records/s, {:.0} tokens/s (from cache: {})",
            file.skipped.len(),
            records as f64 / seconds,
            tokens as f64 / seconds,
            file.from_cache
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("finetune-bench-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
