//! Reading and tokenizing datasets: record shapes, masks, and errors that
//! name the file, the line and what is wrong.

mod common;

use std::process::Command;

use common::{write_chat_data, TinyModel};
use finetune::data::{preview, read_records, tokenize_record, MaskPolicy, ReadOptions, Record};
use finetune::model::{self, LoadOptions};

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn error_of(path: &std::path::Path) -> String {
    read_records(path, &ReadOptions::default())
        .unwrap_err()
        .to_string()
}

/// The records of a file read with the default options.
fn read(path: &std::path::Path) -> Vec<Record> {
    read_records(path, &ReadOptions::default()).unwrap().records
}

#[test]
fn reads_the_three_record_shapes_with_or_without_a_bom() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(
        tmp.path(),
        "mixed.jsonl",
        "\u{feff}{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n\n{\"prompt\":\"2+2=\",\"completion\":\"4\"}\n{\"text\":\"plain\"}\n"
            .as_bytes(),
    );
    let records = read(&path);
    assert_eq!(records.len(), 3);
    assert!(matches!(&records[0], Record::Chat(m) if m.len() == 2));
    assert_eq!(
        records[1],
        Record::Completion {
            prompt: "2+2=".into(),
            completion: "4".into()
        }
    );
    assert_eq!(records[2], Record::Text("plain".into()));
}

#[test]
fn malformed_json_gives_line_column_and_snippet() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(
        tmp.path(),
        "bad.jsonl",
        b"{\"text\":\"a\"}\n{\"text\": \"b\",, }\n",
    );
    let err = error_of(&path);
    assert!(err.contains("bad.jsonl:2:"), "{err}");
    assert!(
        err.contains("malformed JSON") && err.contains("\"b\""),
        "{err}"
    );
}

#[test]
fn records_missing_fields_say_what_was_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(
        tmp.path(),
        "odd.jsonl",
        b"{\"text\":\"a\"}\n{\"question\":\"q\",\"answer\":\"a\"}\n",
    );
    let err = error_of(&path);
    assert!(
        err.contains("odd.jsonl:2") && err.contains("question") && err.contains("`messages`"),
        "{err}"
    );
}

#[test]
fn empty_and_non_utf8_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = write(tmp.path(), "empty.jsonl", b"\n\n");
    assert!(error_of(&empty).contains("empty.jsonl: no records"));
    let latin1 = write(
        tmp.path(),
        "latin1.jsonl",
        b"{\"text\":\"ok\"}\n{\"text\":\"caf\xe9\"}\n",
    );
    let err = error_of(&latin1);
    assert!(
        err.contains("latin1.jsonl:2") && err.contains("UTF-8"),
        "{err}"
    );
    // The input file is never modified.
    assert_eq!(
        std::fs::read(&latin1).unwrap(),
        b"{\"text\":\"ok\"}\n{\"text\":\"caf\xe9\"}\n"
    );
}

#[test]
fn only_the_assistant_reply_and_its_end_marker_are_trained() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let loaded = model::load(&dir, &LoadOptions::default()).unwrap();
    let records = read(&write_chat_data(tmp.path(), 1));
    let example = tokenize_record(
        &records[0],
        loaded.chat_template.as_ref(),
        &loaded.tokenizer,
        MaskPolicy::Completions,
        512,
    )
    .unwrap();
    let trained: String = preview(&example, &loaded.tokenizer)
        .unwrap()
        .into_iter()
        .filter(|(_, t)| *t)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(trained, "well hello<|im_end|>\n");

    let all = tokenize_record(
        &records[0],
        loaded.chat_template.as_ref(),
        &loaded.tokenizer,
        MaskPolicy::All,
        512,
    )
    .unwrap();
    assert_eq!(all.trained_tokens(), all.tokens.len());
    let cut = tokenize_record(
        &records[0],
        loaded.chat_template.as_ref(),
        &loaded.tokenizer,
        MaskPolicy::All,
        5,
    )
    .unwrap();
    assert!(cut.truncated && cut.tokens.len() == 5);
}

#[test]
fn ft_data_inspect_prints_statistics_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let data = write_chat_data(tmp.path(), 6);
    let out = Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(["data", "inspect", "--json", "--model"])
        .arg(&dir)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["stats"]["records"], 6);
    assert_eq!(json["skipped_empty"], 0);
    let trained = json["stats"]["trained_tokens"].as_u64().unwrap();
    let total = json["stats"]["total_tokens"].as_u64().unwrap();
    assert!(trained > 0 && trained < total);
}

#[test]
fn json_documents_hold_a_list_or_an_object_of_records() {
    let tmp = tempfile::tempdir().unwrap();
    let list = write(
        tmp.path(),
        "list.json",
        br#"[{"text": "a"}, {"prompt": "p", "completion": "c"}]"#,
    );
    assert_eq!(read(&list).len(), 2);
    let object = write(
        tmp.path(),
        "object.json",
        br#"{"x1": {"text": "a"}, "x2": {"text": "b"}}"#,
    );
    assert_eq!(read(&object).len(), 2);
    let bad = write(tmp.path(), "bad.json", br#"[{"text": "a"}, {"oops": 1}]"#);
    let err = error_of(&bad);
    assert!(
        err.contains("bad.json: record 2") && err.contains("oops"),
        "{err}"
    );
}

#[test]
fn a_json_file_cut_off_mid_record_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let cut = write(
        tmp.path(),
        "cut.json",
        b"[{\"text\": \"a\"},\n {\"text\": \"b",
    );
    let err = error_of(&cut);
    assert!(
        err.contains("cut.json:2:") && err.contains("cut off"),
        "{err}"
    );
}

#[test]
fn the_shipped_sample_dataset_and_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let records = read(&root.join("examples/sample_dataset.json"));
    assert!(records.len() >= 16);
    assert!(records.iter().all(|r| matches!(r, Record::Chat(_))));
    for name in ["quick", "production"] {
        let path = root.join(format!("configs/{name}.yml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let config: finetune::train::TrainConfig = serde_yaml::from_str(&text).unwrap();
        config.lora.validate().unwrap();
    }
}

#[test]
fn prompt_only_data_is_told_apart_from_answers_and_pairs() {
    use finetune::data::prompts::is_prompt_data;
    let tmp = tempfile::tempdir().unwrap();
    let options = ReadOptions::default();
    let shape = |name: &str, text: &str| {
        is_prompt_data(&write(tmp.path(), name, text.as_bytes()), &options)
    };
    // Prompts, with or without answers, in the shapes GRPO reads.
    assert!(shape(
        "q.jsonl",
        "{\"question\":\"2+2?\",\"answer\":\"#### 4\"}\n"
    ));
    assert!(shape("p.jsonl", "{\"prompt\":\"Name a prime.\"}\n"));
    assert!(shape(
        "m.jsonl",
        "{\"prompt\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n"
    ));
    // A broken first line does not decide: the next readable record does.
    assert!(shape("b.jsonl", "{oops\n{\"question\":\"x\"}\n"));
    // Training examples and preference pairs are not prompt data, though a
    // prompt could be read out of them.
    assert!(!shape(
        "c.jsonl",
        "{\"prompt\":\"2+2=\",\"completion\":\"4\"}\n"
    ));
    assert!(!shape(
        "chat.jsonl",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n"
    ));
    assert!(!shape(
        "pairs.jsonl",
        "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n"
    ));
    assert!(!shape("t.jsonl", "{\"text\":\"plain\"}\n"));
    // Nothing readable, or no file: not prompt data (reading it as
    // examples then says what is wrong).
    assert!(!shape("junk.jsonl", "nonsense\n"));
    assert!(!is_prompt_data(&tmp.path().join("missing.jsonl"), &options));
    // A column mapping applies first.
    let mapped = ReadOptions {
        columns: [("prompt".to_string(), "problem".to_string())].into(),
        ..Default::default()
    };
    assert!(is_prompt_data(
        &write(tmp.path(), "mapped.jsonl", b"{\"problem\":\"2+2?\"}\n"),
        &mapped
    ));
}

#[test]
fn ft_data_inspect_reports_prompts_and_their_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let data = write(
        tmp.path(),
        "prompts.jsonl",
        b"{\"question\":\"What is 2+2?\",\"answer\":\"#### 4\"}\n{\"prompt\":\"Name a prime.\"}\n{\"question\":\"What is 3+3?\",\"answer\":\"6\"}\n",
    );
    let inspect = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ft"))
            .args(["data"])
            .args(args)
            .arg("--model")
            .arg(&dir)
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value =
        serde_json::from_str(&inspect(&["inspect", "--json", "--preview", "2"])).unwrap();
    assert_eq!(json["prompts"], 3);
    assert_eq!(json["with_answer"], 2);
    assert_eq!(json["stats"]["records"], 3);
    assert_eq!(json["stats"]["trained_tokens"], 0);
    assert!(json["stats"]["min_length"].as_u64().unwrap() > 3);
    assert_eq!(json["previews"][0]["answer"], "#### 4");
    assert!(json["previews"][0]["prompt"]
        .as_str()
        .unwrap()
        .contains("What is 2+2?"));
    assert!(json["previews"][1]["answer"].is_null());
    let text = inspect(&["preview", "--from", "2", "-n", "1"]);
    assert!(text.contains("prompt 2 ("), "{text}");
    assert!(text.contains("Name a prime."), "{text}");
    assert!(text.contains("reference answer: none"), "{text}");
    assert!(!text.contains("What is 2+2?"), "{text}");
}
