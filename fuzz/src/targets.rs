//! The fuzz targets: what each feeds its input to, its seeds and its
//! dictionary of format tokens.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use finetune::chat_template::{ChatTemplate, Message};
use finetune::data::records::{read_records, ReadOptions};
use finetune::gguf::GgufFile;
use finetune::model::{self, LoadOptions};
use finetune::tokenizer::Tokenizer;
use finetune::train::config::{resolve_config, TrainConfig};

use crate::repo_root;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Gguf,
    Safetensors,
    Bin,
    ConfigJson,
    Tokenizer,
    Data,
    Yaml,
    Template,
}

pub const NAMES: &[&str] = &[
    "gguf",
    "safetensors",
    "bin",
    "config-json",
    "tokenizer",
    "data",
    "yaml",
    "template",
];

const ALL: &[Target] = &[
    Target::Gguf,
    Target::Safetensors,
    Target::Bin,
    Target::ConfigJson,
    Target::Tokenizer,
    Target::Data,
    Target::Yaml,
    Target::Template,
];

impl Target {
    pub fn parse(name: &str) -> Option<Target> {
        NAMES.iter().position(|n| *n == name).map(|i| ALL[i])
    }

    pub fn name(self) -> &'static str {
        NAMES[ALL.iter().position(|t| *t == self).expect("listed")]
    }
}

/// The dataset formats, chosen by the first byte of a `data` input.
const DATA_EXTENSIONS: &[&str] = &["jsonl", "json", "csv", "parquet", "txt", "tsv"];

/// Parity fixture folders a `config.json` input is loaded against.
const FOLDERS: &[&str] = &[
    "llama", "gpt2", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3",
];

/// What a worker prepared once: scratch folders beside fixture files.
pub struct Context {
    dir: PathBuf,
    /// The gpt2-bin fixture's zip entries other than data.pkl.
    bin_entries: Vec<(String, Vec<u8>)>,
}

fn link(from: &Path, to: &Path) {
    let _ = std::fs::remove_file(to);
    std::os::unix::fs::symlink(from, to).expect("symlink a fixture");
}

impl Context {
    pub fn prepare(target: Target, dir: &Path) -> Context {
        let parity = repo_root().join("tests/fixtures/parity");
        let mut bin_entries = Vec::new();
        match target {
            Target::Safetensors => {
                let d = dir.join("st");
                std::fs::create_dir_all(&d).expect("scratch");
                for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
                    link(&parity.join("llama").join(f), &d.join(f));
                }
            }
            Target::Bin => {
                let d = dir.join("bin");
                std::fs::create_dir_all(&d).expect("scratch");
                for f in ["config.json", "tokenizer.json"] {
                    link(&parity.join("gpt2-bin").join(f), &d.join(f));
                }
                bin_entries = zip_entries(&parity.join("gpt2-bin/pytorch_model.bin"))
                    .into_iter()
                    .filter(|(n, _)| !n.ends_with("data.pkl"))
                    .collect();
            }
            Target::ConfigJson => {
                for name in FOLDERS {
                    let d = dir.join("cfg").join(name);
                    std::fs::create_dir_all(&d).expect("scratch");
                    for f in [
                        "model.safetensors",
                        "tokenizer.json",
                        "tokenizer_config.json",
                    ] {
                        let src = parity.join(name).join(f);
                        if src.exists() {
                            link(&src, &d.join(f));
                        }
                    }
                }
            }
            _ => {}
        }
        Context {
            dir: dir.to_path_buf(),
            bin_entries,
        }
    }
}

fn zip_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(path).expect("fixture");
    let mut archive = zip::ZipArchive::new(file).expect("fixture zip");
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut e = archive.by_index(i).expect("fixture entry");
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).expect("fixture entry");
        out.push((e.name().to_string(), bytes));
    }
    out
}

/// A pickle wrapped into a torch.save zip beside the fixture's storages.
fn wrap_pickle(pickle: &[u8], entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let _ = zip.start_file("pytorch_model/data.pkl", options);
    let _ = zip.write_all(pickle);
    for (name, bytes) in entries {
        let _ = zip.start_file(name.as_str(), options);
        let _ = zip.write_all(bytes);
    }
    zip.finish().map(|c| c.into_inner()).unwrap_or_default()
}

fn outcome<T>(r: finetune::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("err: {e}"),
    }
}

fn load(path: &Path) -> String {
    outcome(model::load(path, &LoadOptions::default()))
}

/// Runs one input; the outcome is "ok" or "err: <message>".
pub fn run(target: Target, ctx: &Context, data: &[u8]) -> String {
    let dir = &ctx.dir;
    match target {
        Target::Gguf => {
            let path = dir.join("input.gguf");
            std::fs::write(&path, data).expect("scratch write");
            match GgufFile::open(&path) {
                Err(e) => format!("err: {e}"),
                Ok(file) => {
                    let mut out = outcome(finetune::tokenizer::gguf::GgufVocab::read(&file));
                    drop(file);
                    out.push_str(" / ");
                    out.push_str(&load(&path));
                    out
                }
            }
        }
        Target::Safetensors => {
            let d = dir.join("st");
            std::fs::write(d.join("model.safetensors"), data).expect("scratch write");
            let read = outcome(model::safetensors::read_weights(&d));
            if read != "ok" {
                return read;
            }
            load(&d)
        }
        Target::Bin => {
            let d = dir.join("bin");
            let bytes = if data.starts_with(b"PK") {
                data.to_vec()
            } else {
                wrap_pickle(data, &ctx.bin_entries)
            };
            std::fs::write(d.join("pytorch_model.bin"), bytes).expect("scratch write");
            load(&d)
        }
        Target::ConfigJson => {
            let path = dir.join("config.json");
            std::fs::write(&path, data).expect("scratch write");
            let config = match model::config::read_config(&path) {
                Err(e) => return format!("err: {e}"),
                Ok(c) => c,
            };
            let model_type = match &config {
                model::config::ModelConfig::Llama(c) => c.model_type.clone(),
                model::config::ModelConfig::Gpt2(_) => "gpt2".into(),
            };
            let folder = match model_type.as_str() {
                "gemma3_text" | "gemma3" => "gemma3",
                t if FOLDERS.contains(&t) => {
                    FOLDERS[FOLDERS.iter().position(|f| *f == t).unwrap_or(0)]
                }
                _ => "llama",
            };
            let d = dir.join("cfg").join(folder);
            std::fs::write(d.join("config.json"), data).expect("scratch write");
            load(&d)
        }
        Target::Tokenizer => {
            let path = dir.join("tokenizer.json");
            std::fs::write(&path, data).expect("scratch write");
            match Tokenizer::from_files(&path, None) {
                Err(e) => format!("err: {e}"),
                Ok(t) => {
                    let ids = t.encode("Hello world! <|im_start|>user\nÿ 😀 12345");
                    match ids {
                        Err(e) => format!("err: {e}"),
                        Ok(ids) => outcome(t.decode(&ids)),
                    }
                }
            }
        }
        Target::Data => {
            let (ext, body) = match data.split_first() {
                Some((&b, rest)) => (DATA_EXTENSIONS[b as usize % DATA_EXTENSIONS.len()], rest),
                None => ("jsonl", data),
            };
            let path = dir.join(format!("train.{ext}"));
            std::fs::write(&path, body).expect("scratch write");
            let r = outcome(read_records(&path, &ReadOptions::default()));
            let _ = std::fs::remove_file(&path);
            r
        }
        Target::Yaml => {
            let path = dir.join("config.yml");
            std::fs::write(&path, data).expect("scratch write");
            outcome(resolve_config(TrainConfig::default(), None, Some(&path)))
        }
        Target::Template => {
            let source = String::from_utf8_lossy(data);
            match ChatTemplate::new(&source, Some("<s>"), Some("</s>")) {
                Err(e) => format!("err: {e}"),
                Ok(t) => {
                    let messages = [
                        Message::new("system", "Be brief."),
                        Message::new("user", "Hi {{ there }}"),
                        Message::new("assistant", "Hello."),
                        Message::new("user", "Again?"),
                    ];
                    outcome(t.render(&messages, true))
                }
            }
        }
    }
}

fn files(dir: &Path, suffix: &str, max_bytes: u64) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .filter(|p| p.metadata().map(|m| m.len() <= max_bytes).unwrap_or(false))
        .collect();
    out.sort();
    out
}

fn head_lines(path: &Path, lines: usize) -> Option<Vec<u8>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut out: String = text.lines().take(lines).collect::<Vec<_>>().join("\n");
    out.push('\n');
    Some(out.into_bytes())
}

/// The seeds: the repository's own small real files, and the cache's when
/// setup fetched it.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    let root = repo_root();
    let parity = root.join("tests/fixtures/parity");
    let read = |p: &Path| std::fs::read(p).ok();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let add_files = |paths: Vec<PathBuf>, out: &mut Vec<Vec<u8>>| {
        for p in paths {
            if let Some(b) = read(&p) {
                if !out.contains(&b) {
                    out.push(b);
                }
            }
        }
    };
    match target {
        Target::Gguf => {
            let mut paths = files(&root.join("tests/fixtures/gguf"), ".gguf", 1 << 20);
            paths.extend(files(
                &root.join("tests/fixtures/gguf/architectures"),
                ".gguf",
                1 << 20,
            ));
            paths.extend(
                files(&root.join(".cache/llama-vocabs"), ".gguf", 2 << 20)
                    .into_iter()
                    .take(6),
            );
            add_files(paths, &mut out);
        }
        Target::Safetensors => {
            let mut paths: Vec<PathBuf> = FOLDERS
                .iter()
                .map(|f| parity.join(f).join("model.safetensors"))
                .collect();
            paths.extend(files(
                &root.join("tests/fixtures/gguf"),
                ".safetensors",
                1 << 20,
            ));
            add_files(paths, &mut out);
            out.push(tiny_safetensors());
        }
        Target::Bin => {
            let bin = parity.join("gpt2-bin/pytorch_model.bin");
            add_files(vec![bin.clone()], &mut out);
            if bin.exists() {
                if let Some((_, pkl)) = zip_entries(&bin)
                    .into_iter()
                    .find(|(n, _)| n.ends_with("data.pkl"))
                {
                    out.push(pkl);
                }
            }
        }
        Target::ConfigJson => {
            let mut paths = Vec::new();
            for f in FOLDERS
                .iter()
                .chain(["gpt2-bin", "mistral-window", "qwen2-window"].iter())
            {
                paths.extend(files(&parity.join(f), "config.json", 1 << 20));
                paths.extend(files(&parity.join(f), "config.v4.json", 1 << 20));
            }
            paths.push(root.join("tests/fixtures/gemma3_270m/hf_config.json"));
            paths.retain(|p| !p.to_string_lossy().ends_with("tokenizer_config.json"));
            paths.retain(|p| !p.to_string_lossy().ends_with("generation_config.json"));
            add_files(paths, &mut out);
        }
        Target::Tokenizer => {
            let paths = FOLDERS
                .iter()
                .map(|f| parity.join(f).join("tokenizer.json"))
                .collect();
            add_files(paths, &mut out);
        }
        Target::Data => {
            let tag = |ext: &str, body: Vec<u8>| {
                let mut v = vec![DATA_EXTENSIONS.iter().position(|e| *e == ext).unwrap_or(0) as u8];
                v.extend(body);
                v
            };
            for (ext, body) in synthetic_data() {
                out.push(tag(ext, body.into_bytes()));
            }
            if let Some(b) = read(&root.join("tests/fixtures/data/alpaca.parquet")) {
                out.push(tag("parquet", b));
            }
            if let Some(b) = read(&root.join("tests/fixtures/data/smollm2_chat_template.json")) {
                out.push(tag("json", b));
            }
            let cache = root.join(".cache/data");
            for (p, ext, n) in [
                (cache.join("chitchat/valid.jsonl"), "jsonl", 20),
                (cache.join("real/la-riots.csv"), "csv", 40),
                (cache.join("real/lear.txt"), "txt", 80),
            ] {
                if let Some(b) = head_lines(&p, n) {
                    out.push(tag(ext, b));
                }
            }
        }
        Target::Yaml => {
            add_files(files(&root.join("configs"), ".yml", 1 << 20), &mut out);
            out.push(
                b"model: tests/fixtures/parity/llama\ndata: data/\nlearning_rate: 1e-4\niters: 10\nbatch_size: 2\nlora:\n  rank: 8\n  alpha: 16\n  targets: [q_proj, v_proj]\n"
                    .to_vec(),
            );
            out.push(b"profile: quick\n".to_vec());
        }
        Target::Template => {
            for s in synthetic_templates() {
                out.push(s.as_bytes().to_vec());
            }
            let mut ggufs = files(
                &root.join("tests/fixtures/gguf/architectures"),
                ".gguf",
                8 << 20,
            );
            ggufs.extend(files(&root.join(".cache/models"), ".gguf", 1 << 30));
            for p in ggufs {
                if let Ok(f) = GgufFile::open(&p) {
                    if let Ok(Some(t)) = f.get_str("tokenizer.chat_template") {
                        let b = t.as_bytes().to_vec();
                        if !out.contains(&b) {
                            out.push(b);
                        }
                    }
                }
            }
        }
    }
    out
}

fn tiny_safetensors() -> Vec<u8> {
    let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]},"__metadata__":{"format":"pt"}}"#;
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header);
    v.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64, 128, 63, 0, 64]);
    v
}

fn synthetic_data() -> Vec<(&'static str, String)> {
    vec![
        (
            "jsonl",
            r#"{"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]}
{"prompt":"2+2=","completion":"4"}
{"instruction":"Add","input":"2 and 2","output":"4"}
{"text":"Plain text."}
{"conversations":[{"from":"human","value":"Hi"},{"from":"gpt","value":"Yo"}]}
"#
            .into(),
        ),
        (
            "json",
            r#"[{"prompt":"a","completion":"b"},{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"r"}]}]"#
                .into(),
        ),
        (
            "csv",
            "instruction,input,output\nAdd,\"2, 2\",4\nSay hi,,\"hi \"\"there\"\"\"\n".into(),
        ),
        ("tsv", "prompt\tcompletion\nq\ta\n".into()),
        ("txt", "First paragraph.\n\nSecond one, longer.\n".into()),
    ]
}

fn synthetic_templates() -> Vec<&'static str> {
    vec![
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content | trim }} [/INST]{% elif m.role == 'assistant' %}{{ m.content }}{{ eos_token }}{% else %}{{ raise_exception('bad role') }}{% endif %}{% endfor %}",
        "{% set sys = messages[0].content if messages[0].role == 'system' else '' %}{% for m in messages[1:] %}{{ loop.index }}{{ m.content.strip().upper() }}{% endfor %}{{ sys | length }}",
        "{% macro f(x) %}{{ x ~ x }}{% endmacro %}{{ f(messages | length) }}{{ messages | tojson }}{{ range(3) | list }}",
    ]
}

/// Format tokens the mutator inserts.
pub fn dictionary(target: Target) -> Vec<&'static str> {
    let json = vec![
        "{", "}", "[", "]", "\"", ":", ",", "null", "true", "-1", "0", "1e309", "\"\"", "[]", "{}",
        "\\u0000", "\\ud800", "[[[[[[[[", "{\"a\":",
    ];
    match target {
        Target::Gguf => vec![
            "GGUF",
            "general.architecture",
            "llama",
            "gpt2",
            ".block_count",
            ".head_count",
            ".embedding_length",
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.merges",
            "tokenizer.ggml.scores",
            "general.alignment",
            "\u{0}\u{0}\u{0}\u{0}",
            "\u{ff}\u{ff}\u{ff}\u{ff}",
        ],
        Target::Safetensors => {
            let mut d = json;
            d.extend([
                "\"dtype\"",
                "\"F32\"",
                "\"BF16\"",
                "\"F16\"",
                "\"U32\"",
                "\"I64\"",
                "\"shape\"",
                "\"data_offsets\"",
                "\"__metadata__\"",
                "[0,0]",
                "[0,18446744073709551615]",
                ".weight",
                ".scales",
                ".biases",
                "model.embed_tokens",
            ]);
            d
        }
        Target::Bin => vec![
            "\u{80}\u{2}",
            "q\u{0}",
            "h\u{0}",
            "(",
            "t",
            "R",
            "Q",
            "K\u{ff}",
            "J\u{ff}\u{ff}\u{ff}\u{ff}",
            "\u{8a}\u{8}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{7f}",
            "ctorch._utils\n_rebuild_tensor_v2\n",
            "storage",
            "FloatStorage",
            "collections\nOrderedDict\n",
            ".",
            "}",
            "]",
            ")",
            "\u{94}",
            "h\u{1}",
            "PK\u{3}\u{4}",
            "PK\u{1}\u{2}",
            "PK\u{5}\u{6}",
        ],
        Target::ConfigJson => {
            let mut d = json;
            d.extend([
                "\"num_key_value_heads\"",
                "\"head_dim\"",
                "\"hidden_size\"",
                "\"vocab_size\"",
                "\"num_hidden_layers\"",
                "\"sliding_window\"",
                "\"rope_scaling\"",
                "\"layer_types\"",
                "\"quantization\"",
                "{\"group_size\":0,\"bits\":4}",
                "\"tie_word_embeddings\":true",
                "\"model_type\":\"gpt2\"",
                "\"model_type\":\"qwen2\"",
                "\"model_type\":\"gemma3\"",
                "\"text_config\"",
                "\"rope_parameters\"",
                "\"partial_rotary_factor\"",
            ]);
            d
        }
        Target::Tokenizer => {
            let mut d = json;
            d.extend([
                "\"added_tokens\"",
                "\"id\"",
                "\"merges\"",
                "\"vocab\"",
                "\"BPE\"",
                "\"Unigram\"",
                "\"WordPiece\"",
                "\"ByteLevel\"",
                "\"Split\"",
                "\"Regex\"",
                "(?:",
                ".*",
                "\"special\":true",
            ]);
            d
        }
        Target::Data => {
            let mut d = json;
            d.extend([
                "\"messages\"",
                "\"role\"",
                "\"content\"",
                "\"prompt\"",
                "\"completion\"",
                "\"text\"",
                "\"conversations\"",
                "\"from\"",
                "\"value\"",
                "\n",
                "\r\n",
                ",",
                "\"\"\"",
                "\t",
                "PAR1",
                "\u{feff}",
            ]);
            d
        }
        Target::Yaml => vec![
            ":",
            "- ",
            "\n  ",
            "&a ",
            "*a",
            "!!binary ",
            "!!str ",
            "<<: *a",
            "~",
            "[",
            "]",
            "{",
            "}",
            "'",
            "\"",
            "|",
            ">",
            "---\n",
            "...\n",
            "iters: ",
            "batch_size: ",
            "learning_rate: ",
            "lora:",
            "rank: ",
            "profile: ",
            "-1",
            ".inf",
            ".nan",
            "1e309",
            "0x7fffffff",
        ],
        Target::Template => vec![
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "#}",
            " for x in messages ",
            " endfor ",
            " if ",
            " endif ",
            " set ",
            " macro ",
            " endmacro ",
            " recursive ",
            " loop(",
            "range(",
            "99999999",
            " * ",
            "|join",
            "|tojson",
            "|list",
            "~",
            "messages",
            "loop.cycle(",
            "raise_exception(",
            "[0]",
            "'a' * 100000000",
            "namespace(",
            " include ",
            " extends ",
            " filter ",
            " call ",
        ],
    }
}
