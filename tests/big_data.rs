//! Bounded memory on big data (issue 18): a file is tokenized as a stream
//! (records in chunks, examples written to disk as they come and read back
//! per batch), giving the same examples as tokenizing every record in
//! memory; what stays resident is an index of a fixed size per example,
//! whatever the examples' lengths; a damaged cache file is rebuilt. The
//! 2 GB measurement is scripts/bench/big_jsonl.sh (BENCHMARKS.md).

use std::io::Write;
use std::path::Path;

use finetune::chat_template::ChatTemplate;
use finetune::data::{
    read_records, split_examples, tokenize::CHUNK_RECORDS, tokenize_record, DatasetStats,
    ExampleSource, MaskPolicy, ReadOptions, Tokenization,
};
use finetune::tokenizer::Tokenizer;
use finetune::train::batches::{length_sorted_groups, make_batch};

fn tokenizer(dir: &Path) -> (Tokenizer, ChatTemplate) {
    finetune::fixtures::write_tokenizer(dir);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap())
            .unwrap();
    let tokenizer = Tokenizer::from_files(&dir.join("tokenizer.json"), Some(&config)).unwrap();
    let template = ChatTemplate::new(
        config["chat_template"].as_str().unwrap(),
        Some("<|im_start|>"),
        Some("<|im_end|>"),
    )
    .unwrap();
    (tokenizer, template)
}

/// `n` chat records, the `k`-th with a reply of `reply(k)` words; every
/// 50th has a question too long for a reply to fit (nothing to learn once
/// cut to 48 tokens: left out).
fn write_chat(path: &Path, n: usize, reply: impl Fn(usize) -> usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for k in 0..n {
        let words = reply(k);
        let long = if k % 50 == 49 {
            " why".repeat(60)
        } else {
            String::new()
        };
        let answer: Vec<String> = (0..words)
            .map(|w| format!("w{}", (k * 7 + w) % 13))
            .collect();
        let record = serde_json::json!({"messages": [
            {"role": "user", "content": format!("question {k}{long}")},
            {"role": "assistant", "content": answer.join(" ")},
        ]});
        writeln!(out, "{record}").unwrap();
    }
}

#[test]
fn streamed_examples_equal_the_in_memory_tokenization_and_the_index_is_fixed_per_example() {
    let tmp = tempfile::tempdir().unwrap();
    let (tokenizer, template) = tokenizer(tmp.path());
    let tokenization = Tokenization {
        template: Some(&template),
        tokenizer: &tokenizer,
        policy: MaskPolicy::Completions,
        max_length: 48,
    };
    // More records than one chunk, so chunks meet.
    let n = CHUNK_RECORDS * 2 + 123;
    let short = tmp.path().join("short.jsonl");
    let long = tmp.path().join("long.jsonl");
    write_chat(&short, n, |k| 1 + k % 5);
    write_chat(&long, n, |k| 20 + k % 40);

    let file = tokenization
        .file(&short, &ReadOptions::default(), None)
        .unwrap();
    let expected: Vec<_> = read_records(&short, &ReadOptions::default())
        .unwrap()
        .records
        .iter()
        .map(|r| tokenize_record(r, Some(&template), &tokenizer, MaskPolicy::Completions, 48))
        .map(Result::unwrap)
        .filter(|e| e.trained_tokens() > 0 && e.tokens.len() > 1)
        .collect();
    assert_eq!(file.skipped_empty, n / 50);
    assert_eq!(file.chat_records, n);
    assert_eq!(file.examples.len(), expected.len());
    assert!(file.examples.iter().eq(expected.iter().cloned()));
    // Statistics and batches from the index and the disk match memory.
    assert_eq!(
        DatasetStats::of(&file.examples),
        DatasetStats::of(&expected)
    );
    let groups = length_sorted_groups(&file.examples, 4);
    assert_eq!(groups, length_sorted_groups(&expected, 4));
    for group in groups.iter().step_by(97) {
        let (a, b) = (
            make_batch(&file.examples, group, 0, 8),
            make_batch(&expected, group, 0, 8),
        );
        assert_eq!(a.trained_tokens, b.trained_tokens);
        assert_eq!(a.inputs.as_slice::<i32>(), b.inputs.as_slice::<i32>());
        assert_eq!(a.targets.as_slice::<i32>(), b.targets.as_slice::<i32>());
        assert_eq!(a.mask.as_slice::<f32>(), b.mask.as_slice::<f32>());
    }

    // Resident: 16 bytes an example, however long the examples are.
    let long_file = Tokenization {
        max_length: 400,
        ..tokenization
    }
    .file(&long, &ReadOptions::default(), None)
    .unwrap();
    let tokens =
        |s: &finetune::data::Examples| -> usize { (0..s.len()).map(|i| s.example_len(i)).sum() };
    assert!(tokens(&long_file.examples) > 2 * tokens(&file.examples));
    for examples in [&file.examples, &long_file.examples] {
        assert_eq!(examples.resident_bytes(), 16 * examples.len());
    }
    // A split shares the store: 4 bytes an example more.
    let (train, valid) = split_examples(file.examples.clone(), 0.1, 3);
    assert_eq!(train.len() + valid.len(), file.examples.len());
    assert_eq!(
        train.resident_bytes(),
        16 * file.examples.len() + 4 * train.len()
    );
    // Each part keeps the file's order.
    for part in [&train, &valid] {
        let mut rest = expected.iter();
        assert!(part.iter().all(|e| rest.any(|x| *x == e)));
    }
}

#[test]
fn a_damaged_cache_file_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let (tokenizer, template) = tokenizer(tmp.path());
    let tokenization = Tokenization {
        template: Some(&template),
        tokenizer: &tokenizer,
        policy: MaskPolicy::Completions,
        max_length: 48,
    };
    let data = tmp.path().join("data.jsonl");
    write_chat(&data, 300, |k| 1 + k % 9);
    let cache = tmp.path().join("cache");
    let first = tokenization
        .file(&data, &ReadOptions::default(), Some(&cache))
        .unwrap();
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let path = &cached[0];
    let good = std::fs::read(path).unwrap();
    // Read now: the damage below is done in place, under the open file.
    let want: Vec<_> = first.examples.iter().collect();
    let first_len = first.examples.example_len(0);
    let again = tokenization
        .file(&data, &ReadOptions::default(), Some(&cache))
        .unwrap();
    assert!(again.from_cache);
    assert!(again.examples.iter().eq(want.iter().cloned()));
    assert_eq!(again.skipped_empty, first.skipped_empty);
    drop((first, again));

    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("cut short", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("a flag of 7", {
            // The first example's first flag: after its tokens.
            let len = first_len;
            let mut b = good.clone();
            b[8 + 4 * len] = 7;
            b
        }),
        ("a flag count that disagrees with the index", {
            let len = first_len;
            let mut b = good.clone();
            let flag = 8 + 4 * len + len - 1;
            b[flag] ^= 1;
            b
        }),
        ("a wrong trailer", {
            let mut b = good.clone();
            let n = b.len();
            b[n - 1] ^= 0xff;
            b
        }),
    ];
    for (what, bytes) in damaged {
        std::fs::write(path, &bytes).unwrap();
        let rebuilt = tokenization
            .file(&data, &ReadOptions::default(), Some(&cache))
            .unwrap();
        assert!(!rebuilt.from_cache, "{what}: used");
        assert!(rebuilt.examples.iter().eq(want.iter().cloned()), "{what}");
        assert_eq!(std::fs::read(path).unwrap(), good, "{what}: not rewritten");
    }
}

#[test]
fn a_corpus_over_several_pieces_gives_the_windows_of_the_whole_text() {
    let tmp = tempfile::tempdir().unwrap();
    let (tokenizer, _) = tokenizer(tmp.path());
    let tokenization = Tokenization {
        template: None,
        tokenizer: &tokenizer,
        policy: MaskPolicy::Completions,
        max_length: 100,
    };
    // About 2.5 pieces of text; no blank lines (see corpus_stream).
    let mut text = String::new();
    let mut k = 0usize;
    while text.len() < finetune::data::tokenize::CORPUS_PIECE_BYTES * 5 / 2 {
        text.push_str(&format!("line {k} hello world w{}\n", k % 17));
        k += 1;
    }
    let path = tmp.path().join("corpus.txt");
    std::fs::write(&path, &text).unwrap();
    let file = tokenization
        .file(&path, &ReadOptions::default(), None)
        .unwrap();
    let whole = tokenizer.encode(&text).unwrap();
    assert_eq!(file.examples.len(), whole.len().div_ceil(100));
    let streamed: Vec<u32> = file.examples.iter().flat_map(|e| e.tokens).collect();
    assert_eq!(streamed, whole);
    assert!(file
        .examples
        .iter()
        .all(|e| e.trained.iter().all(|&t| t) && e.tokens.len() <= 100));
}
