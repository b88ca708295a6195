//! The export check: what was written is loaded back with FineTune's own
//! readers and compared with the model as trained, on the run's validation
//! examples (else its training examples) and a few fixed conversations:
//!
//! - template: the export's chat template (tokenizer_config.json, GGUF
//!   metadata, or an Ollama Modelfile) renders the same text as the one the
//!   run trained with;
//! - tokenizer: the export's tokenizer gives the same ids;
//! - greedy: the same continuations (identical for lossless types and
//!   f16 / bf16 / q8_0, unless the trained model itself was at a near tie);
//! - perplexity: trained, export and base, with the difference;
//! - adapter: the export is nearer the trained model than the base is, so a
//!   lost adapter shows.
//!
//! The table is printed by the callers and written beside the export
//! (`<export>.check.md` and `.check.json`); any failed row fails the export.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mlx_rs::Array;
use serde::Serialize;

use super::go_template as go;
use crate::chat_template::{ChatTemplate, Message};
use crate::data::records::{Record, RecordStream};
use crate::data::templates;
use crate::data::tokenize::Tokenization;
use crate::data::Pair;
use crate::error::{Error, Result};
use crate::gguf::mix::FileType;
use crate::model::{LoadOptions, LoadedModel, Model};
use crate::runs::Run;
use crate::tokenizer::Tokenizer;

/// What was exported, and where.
#[derive(Debug, Clone)]
pub enum Exported {
    /// mlx-lm or PEFT adapters for the run's base.
    Adapters(PathBuf),
    /// A fused Hugging Face folder.
    Fused(PathBuf),
    /// A GGUF model file of this type.
    Gguf(PathBuf, FileType),
    /// llama.cpp's LoRA GGUF for the run's base.
    GgufLora(PathBuf),
    /// An Ollama folder: its Modelfile, and the GGUF it names of this type.
    Ollama(PathBuf, FileType),
}

impl Exported {
    pub fn path(&self) -> &Path {
        match self {
            Self::Adapters(p) | Self::Fused(p) | Self::GgufLora(p) => p,
            Self::Gguf(p, _) | Self::Ollama(p, _) => p,
        }
    }

    fn kind(&self) -> String {
        match self {
            Self::Adapters(_) => "adapters".into(),
            Self::Fused(_) => "fused (float32)".into(),
            Self::Gguf(_, t) => format!("GGUF {}", t.name()),
            Self::GgufLora(_) => "GGUF LoRA".into(),
            Self::Ollama(_, t) => format!("Ollama ({})", t.name()),
        }
    }

    /// How far an export of this kind may honestly drift from the trained
    /// model: perplexity in percent, whether greedy text must be identical,
    /// and the logit margin below which a differing greedy pick is a tie.
    /// The perplexity bounds catch a broken export (a wrong layout or a lost
    /// tensor moves it by far more), not a quantization's usual cost: on the
    /// default model Q8_0 moves it 0.1 %, Q4_K_M 3 % (BENCHMARKS.md), but a
    /// tiny model with sharp logits moves several times more.
    fn tolerance(&self) -> Tolerance {
        let file_type = match self {
            Self::Gguf(_, t) | Self::Ollama(_, t) => *t,
            _ => return Tolerance::new(0.5, true, 1e-3),
        };
        let name = file_type.name().to_ascii_uppercase();
        match name.as_str() {
            "F32" => Tolerance::new(0.5, true, 1e-3),
            "F16" => Tolerance::new(2.0, true, 0.05),
            "BF16" => Tolerance::new(5.0, true, 0.3),
            "Q8_0" => Tolerance::new(5.0, true, 0.3),
            n if n.starts_with("Q6") => Tolerance::new(8.0, false, 0.0),
            n if n.starts_with("Q5") => Tolerance::new(12.0, false, 0.0),
            n if n.starts_with("Q4") || n.starts_with("IQ4") => Tolerance::new(25.0, false, 0.0),
            n if n.starts_with("Q3") => Tolerance::new(50.0, false, 0.0),
            _ => Tolerance::new(100.0, false, 0.0),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Tolerance {
    perplexity_percent: f64,
    greedy_identical: bool,
    tie_margin: f32,
}

impl Tolerance {
    fn new(perplexity_percent: f64, greedy_identical: bool, tie_margin: f32) -> Self {
        Self {
            perplexity_percent,
            greedy_identical,
            tie_margin,
        }
    }
}

/// How much the check measures.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Records taken from the data (greedy prompts and perplexity texts).
    pub examples: usize,
    /// Tokens generated per greedy prompt.
    pub new_tokens: usize,
    /// Longest text scored, in tokens.
    pub max_tokens: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            examples: 4,
            new_tokens: 24,
            max_tokens: 256,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub check: String,
    /// `ok`, `FAIL`, or `note` (measured, but nothing to pass or fail).
    pub status: String,
    pub result: String,
}

/// The check's figures and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub export: PathBuf,
    pub kind: String,
    /// Size of what was written (all files of a folder).
    pub bytes: u64,
    /// What the export was compared with.
    pub against: String,
    /// Where the examples came from.
    pub data: String,
    pub rows: Vec<CheckRow>,
    pub perplexity_trained: f64,
    pub perplexity_export: f64,
    pub perplexity_base: Option<f64>,
    /// (export − trained) / trained, in percent.
    pub perplexity_delta_percent: f64,
    pub greedy_identical: usize,
    pub greedy_total: usize,
    pub passed: bool,
    pub seconds: f64,
}

impl CheckReport {
    /// The rows that failed, as sentences.
    pub fn failures(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.status == "FAIL")
            .map(|r| format!("{}: {}", r.check, r.result))
            .collect()
    }

    /// The table as plain text (the CLI prints it).
    pub fn table(&self) -> String {
        let mut out = format!(
            "export check: {} ({}, {}) against {}\n  on {}\n",
            self.export.display(),
            self.kind,
            human_bytes(self.bytes),
            self.against,
            self.data
        );
        let width = self.rows.iter().map(|r| r.check.len()).max().unwrap_or(5);
        for r in &self.rows {
            out.push_str(&format!(
                "  {:<width$}  {:<4}  {}\n",
                r.check, r.status, r.result
            ));
        }
        out.push_str(if self.passed {
            "  verdict: passed\n"
        } else {
            "  verdict: FAILED — this export does not behave like the trained model\n"
        });
        out
    }

    /// The table as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# Export check\n\n- export: `{}` ({}, {})\n- against: {}\n- data: {}\n- verdict: **{}** ({:.1} s)\n\n| check | status | result |\n|---|---|---|\n",
            self.export.display(),
            self.kind,
            human_bytes(self.bytes),
            self.against,
            self.data,
            if self.passed { "passed" } else { "FAILED" },
            self.seconds
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                r.check,
                r.status,
                r.result.replace('|', "\\|")
            ));
        }
        out
    }

    /// Writes `<export>.check.md` and `.check.json` beside the export
    /// (for `model.gguf`: `model.check.md`); returns the Markdown's path.
    pub fn write_beside(&self) -> Result<PathBuf> {
        let (md, json) = report_paths(&self.export);
        crate::files::write_atomic(&md, self.markdown().as_bytes())?;
        let text = serde_json::to_string_pretty(self).expect("serializable");
        crate::files::write_atomic(&json, text.as_bytes())?;
        Ok(md)
    }
}

/// Where the report of an export at `export` goes.
pub fn report_paths(export: &Path) -> (PathBuf, PathBuf) {
    let stem = if export.is_file() {
        export.with_extension("")
    } else {
        export.to_path_buf()
    };
    let name = stem
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let dir = stem.parent().unwrap_or(Path::new("."));
    (
        dir.join(format!("{name}.check.md")),
        dir.join(format!("{name}.check.json")),
    )
}

/// What an export is compared with: a model, and the adapters trained on
/// it, with the template and data of the run.
pub struct Subject {
    pub model: PathBuf,
    pub adapters: Option<PathBuf>,
    /// The run's `template` setting (None: the model's own).
    pub template: Option<String>,
    /// The run's settings, for its data (None: fixed conversations only).
    pub config: Option<crate::train::TrainConfig>,
    pub label: String,
}

impl Subject {
    /// A run as trained.
    pub fn of_run(run: &Run) -> Result<Self> {
        let config = run.read_config()?;
        Ok(Self {
            model: config.model.clone(),
            adapters: Some(run.adapters_dir()),
            template: config.template.clone(),
            label: format!("run {} as trained", run.id),
            config: Some(config),
        })
    }

    /// A model as it is (`ft models convert`).
    pub fn of_model(model: &Path) -> Self {
        Self {
            model: model.to_path_buf(),
            adapters: None,
            template: None,
            config: None,
            label: format!("{} as loaded", model.display()),
        }
    }
}

/// Checks `export` of `run` (see the module's description).
pub fn check_run_export(
    run: &Run,
    export: &Exported,
    options: &CheckOptions,
) -> Result<CheckReport> {
    check_export(&Subject::of_run(run)?, export, options)
}

/// Checks `export` against `subject` (see the module's description).
pub fn check_export(
    subject: &Subject,
    export: &Exported,
    options: &CheckOptions,
) -> Result<CheckReport> {
    let start = Instant::now();
    let load = LoadOptions {
        dequantize: true,
        ..Default::default()
    };
    let mut trained = crate::model::load(&subject.model, &load)?;
    let resolved = templates::resolve(
        subject.template.as_deref(),
        trained.chat_template.as_ref(),
        &trained.tokenizer,
    )?;
    let template = resolved.template;
    // A model without a template of its own (converted as it is) may be
    // written without one.
    let template_expected = subject.template.is_some() || trained.chat_template.is_some();
    let (samples, data) = Samples::from_config(subject.config.as_ref(), options)?;
    let policy = subject
        .config
        .as_ref()
        .map(|c| c.mask_policy())
        .unwrap_or(crate::data::tokenize::MaskPolicy::Completions);
    // Texts fit the model (GPT-2 sees a fixed number of positions).
    let max_length = trained
        .model
        .max_positions()
        .map_or(options.max_tokens, |p| options.max_tokens.min(p));
    let tokenization = Tokenization {
        template: Some(&template),
        tokenizer: &trained.tokenizer,
        policy,
        max_length,
    };
    let texts = samples.token_texts(&tokenization)?;

    // The base first (no adapter yet), then the trained model.
    let base_nll = match &subject.adapters {
        Some(dir) => {
            let nll = texts_nll(&mut trained.model, &texts)?;
            crate::lora::load_adapters(&mut trained.model, dir)?;
            Some(nll)
        }
        None => None,
    };
    let reference = Reference::measure(&mut trained, &template, &samples, &texts, options)?;
    let LoadedModel {
        model,
        tokenizer: trained_tokenizer,
        ..
    } = trained;
    drop(model);

    let mut view = open_export(subject, export, &load)?;
    let against = format!("{} (template `{}`)", subject.label, resolved.name);
    let mut rows = Vec::new();
    compare_templates(
        &template,
        &view.template,
        view.tokenizer.text_bos().is_some(),
        template_expected,
        &samples,
        &mut rows,
    )?;
    compare_tokenizers(
        &trained_tokenizer,
        &view.tokenizer,
        &samples,
        &template,
        &mut rows,
    )?;
    let export_nll = texts_nll(&mut view.model, &texts)?;
    let greedy = compare_greedy(
        &reference, &template, &mut view, &samples, export, options, &mut rows,
    )?;
    let (ppl_trained, ppl_export) = (perplexity(&reference.nll), perplexity(&export_nll));
    let ppl_base = base_nll.as_deref().map(perplexity);
    let delta = (ppl_export - ppl_trained) / ppl_trained * 100.0;
    let tolerance = export.tolerance();
    rows.push(CheckRow {
        check: "perplexity".into(),
        status: status(delta.abs() <= tolerance.perplexity_percent),
        result: format!(
            "trained {ppl_trained:.3}, export {ppl_export:.3} ({delta:+.2} %, allowed ±{} %){}",
            tolerance.perplexity_percent,
            ppl_base
                .map(|p| format!(", base {p:.3}"))
                .unwrap_or_default()
        ),
    });
    if let Some(base_nll) = &base_nll {
        rows.push(adapter_row(&reference.nll, base_nll, &export_nll));
    }
    if let Some(row) = stop_row(&reference, &view) {
        rows.push(row);
    }

    let passed = rows.iter().all(|r| r.status != "FAIL");
    Ok(CheckReport {
        export: export.path().to_path_buf(),
        kind: export.kind(),
        bytes: size_of(export.path()),
        against,
        data,
        rows,
        perplexity_trained: ppl_trained,
        perplexity_export: ppl_export,
        perplexity_base: ppl_base,
        perplexity_delta_percent: delta,
        greedy_identical: greedy.0,
        greedy_total: greedy.1,
        passed,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn status(ok: bool) -> String {
    if ok { "ok" } else { "FAIL" }.into()
}

/// Conversations, prompts and texts the check measures on.
struct Samples {
    /// Every record read, for perplexity.
    records: Vec<Record>,
    /// Greedy prompts: conversations ending before an assistant turn, or
    /// text.
    prompts: Vec<Prompt>,
    /// Conversations for the template comparison (the data's and fixed ones).
    conversations: Vec<Vec<Message>>,
}

enum Prompt {
    Chat(Vec<Message>),
    Text(String),
}

impl Samples {
    fn from_config(
        config: Option<&crate::train::TrainConfig>,
        options: &CheckOptions,
    ) -> Result<(Self, String)> {
        let Some(config) = config else {
            return Ok((
                Self::new(Vec::new()),
                format!("{} fixed conversations", FIXED.len()),
            ));
        };
        let valid = config
            .valid
            .clone()
            .or_else(|| crate::data::records::valid_file(&config.data));
        let (path, which) = match &valid {
            Some(v) => (v.clone(), "validation"),
            None => (config.data.clone(), "training"),
        };
        let mut records = Vec::new();
        // A missing or unreadable data file still lets the fixed
        // conversations check the export.
        let described = match RecordStream::open(&path, &config.read_options()) {
            Ok(stream) => {
                for record in stream.take(options.examples) {
                    records.push(record?);
                }
                format!(
                    "{} {which} record(s) of {} and {} fixed conversations",
                    records.len(),
                    path.display(),
                    FIXED.len()
                )
            }
            Err(e) => format!("{} fixed conversations ({e})", FIXED.len()),
        };
        Ok((Self::new(records), described))
    }

    fn new(records: Vec<Record>) -> Self {
        let mut prompts = Vec::new();
        let mut conversations: Vec<Vec<Message>> = fixed_conversations();
        for record in &records {
            match record {
                Record::Chat(messages) => {
                    let cut = messages
                        .iter()
                        .rposition(|m| m.role == "assistant")
                        .unwrap_or(messages.len());
                    if cut > 0 {
                        prompts.push(Prompt::Chat(messages[..cut].to_vec()));
                    }
                    conversations.push(messages.clone());
                }
                Record::Completion { prompt, .. } => prompts.push(Prompt::Text(prompt.clone())),
                // A pair's prompt, and its preferred answer as the conversation.
                Record::Preference(pair) => match &**pair {
                    Pair::Chat { prompt, chosen, .. } => {
                        prompts.push(Prompt::Chat(prompt.clone()));
                        conversations.push([prompt.clone(), chosen.clone()].concat());
                    }
                    Pair::Text { prompt, .. } => prompts.push(Prompt::Text(prompt.clone())),
                },
                Record::Text(text) | Record::Corpus(text) => {
                    let head: String = text.chars().take(200).collect();
                    prompts.push(Prompt::Text(head));
                }
            }
        }
        if prompts.is_empty() {
            prompts.extend(
                fixed_conversations()
                    .into_iter()
                    .take(2)
                    .map(|c| Prompt::Chat(c[..c.len() - 1].to_vec())),
            );
        }
        Self {
            records,
            prompts,
            conversations,
        }
    }

    /// The token ids scored for perplexity: the records as training
    /// tokenized them, else the fixed conversations.
    fn token_texts(&self, tokenization: &Tokenization) -> Result<Vec<Vec<u32>>> {
        let mut texts = Vec::new();
        for record in &self.records {
            for example in tokenization.record(record)? {
                texts.push(example.tokens);
            }
        }
        if texts.is_empty() {
            for c in fixed_conversations() {
                texts.push(tokenization.record(&Record::Chat(c))?.remove(0).tokens);
            }
        }
        texts.retain(|t| t.len() >= 2);
        texts.truncate(16);
        Ok(texts)
    }
}

/// Conversations every export is checked on: with and without a system
/// prompt, one and several turns, and text beyond English.
const FIXED: &[&[(&str, &str)]] = &[
    &[
        ("system", "You are a concise assistant."),
        ("user", "What is the capital of France?"),
        ("assistant", "Paris."),
    ],
    &[
        ("user", "Write one sentence about autumn."),
        ("assistant", "Leaves fall."),
    ],
    &[
        ("user", "Hello!"),
        ("assistant", "Hi, how can I help?"),
        ("user", "Translate 'thank you' into German and Japanese."),
        ("assistant", "Danke — ありがとう."),
    ],
    &[
        ("system", "Answer in one word."),
        ("user", "2 + 2 = ?"),
        ("assistant", "Four."),
        ("user", "Und auf Französisch? «Merci» 🙂"),
        ("assistant", "Quatre."),
    ],
];

fn fixed_conversations() -> Vec<Vec<Message>> {
    FIXED
        .iter()
        .map(|c| c.iter().map(|(r, t)| Message::new(r, t)).collect())
        .collect()
}

/// What the trained model did on the samples.
struct Reference {
    nll: Vec<Vec<f32>>,
    greedy: Vec<Greedy>,
}

impl Reference {
    fn measure(
        trained: &mut LoadedModel,
        template: &ChatTemplate,
        samples: &Samples,
        texts: &[Vec<u32>],
        options: &CheckOptions,
    ) -> Result<Self> {
        let nll = texts_nll(&mut trained.model, texts)?;
        let mut greedy = Vec::new();
        for prompt in &samples.prompts {
            let ids = prompt_ids(
                prompt,
                Some(&PromptTemplate::Jinja(template)),
                &trained.tokenizer,
            )?;
            greedy.push(greedy_run(
                &mut trained.model,
                &trained.tokenizer,
                &ids,
                options,
            )?);
        }
        Ok(Self { nll, greedy })
    }
}

/// The chat template an export carries.
enum ExportTemplate {
    /// None (adapters, which use the base's) or a Jinja one.
    Jinja(Option<Box<ChatTemplate>>),
    /// An Ollama Modelfile's TEMPLATE, SYSTEM and stops.
    Ollama(go::OllamaTemplate),
    /// Adapters only: the base's template applies.
    Base,
}

enum PromptTemplate<'a> {
    Jinja(&'a ChatTemplate),
    Ollama(&'a go::OllamaTemplate),
}

/// The export as loaded back.
struct ExportView {
    model: Model,
    tokenizer: Tokenizer,
    template: ExportTemplate,
}

fn open_export(subject: &Subject, export: &Exported, load: &LoadOptions) -> Result<ExportView> {
    let base = &subject.model;
    let adapters = || {
        subject.adapters.clone().ok_or_else(|| {
            Error::Invalid("checking a LoRA export needs the run it came from".into())
        })
    };
    let from = |loaded: LoadedModel, template| ExportView {
        model: loaded.model,
        tokenizer: loaded.tokenizer,
        template,
    };
    Ok(match export {
        Exported::Adapters(dir) => {
            let mut loaded = crate::model::load(base, load)?;
            crate::lora::load_adapters(&mut loaded.model, dir)?;
            from(loaded, ExportTemplate::Base)
        }
        Exported::Fused(path) | Exported::Gguf(path, _) => {
            let mut loaded = crate::model::load(path, load)?;
            let template = ExportTemplate::Jinja(loaded.chat_template.take().map(Box::new));
            from(loaded, template)
        }
        Exported::GgufLora(file) => {
            let mut loaded = crate::model::load(base, load)?;
            super::gguf_lora::read_gguf_lora(&mut loaded, &adapters()?, file)?;
            from(loaded, ExportTemplate::Base)
        }
        Exported::Ollama(dir, _) => {
            let modelfile = super::ollama::read_modelfile(&dir.join("Modelfile"))?;
            if modelfile.adapter.is_some() {
                return Err(Error::Invalid(format!(
                    "{}: checking a Modelfile with ADAPTER is not supported",
                    dir.display()
                )));
            }
            let loaded = crate::model::load(&dir.join(&modelfile.from), load)?;
            let template = go::OllamaTemplate {
                template: modelfile.template.clone().unwrap_or_default(),
                stops: modelfile.stops().into_iter().map(str::to_string).collect(),
                system: modelfile.system.clone(),
            };
            from(loaded, ExportTemplate::Ollama(template))
        }
    })
}

fn compare_templates(
    trained: &ChatTemplate,
    export: &ExportTemplate,
    adds_bos: bool,
    expected: bool,
    samples: &Samples,
    rows: &mut Vec<CheckRow>,
) -> Result<()> {
    let mut compared = 0;
    let mut first_difference: Option<String> = None;
    for conversation in &samples.conversations {
        // Every prefix ending with a user turn, as a chat would send it.
        for end in (1..=conversation.len()).filter(|&e| conversation[e - 1].role == "user") {
            let messages = &conversation[..end];
            let want = trained.render(messages, true)?;
            let got = match export {
                ExportTemplate::Base => return Ok(()),
                ExportTemplate::Jinja(None) if !expected => {
                    rows.push(CheckRow {
                        check: "template".into(),
                        status: "note".into(),
                        result: "neither the model nor the export has a chat template".into(),
                    });
                    return Ok(());
                }
                ExportTemplate::Jinja(None) => {
                    rows.push(CheckRow {
                        check: "template".into(),
                        status: "FAIL".into(),
                        result: "the export carries no chat template; the run trained with one"
                            .into(),
                    });
                    return Ok(());
                }
                ExportTemplate::Jinja(Some(t)) => t.render(messages, true),
                // Ollama puts the BOS in front itself, so the translation
                // leaves out a template's own.
                ExportTemplate::Ollama(t) => {
                    go::render_ollama(&t.template, messages, t.system.as_deref()).map(|text| {
                        let bos = &trained.bos_token;
                        if adds_bos
                            && !bos.is_empty()
                            && want.starts_with(bos.as_str())
                            && !text.starts_with(bos.as_str())
                        {
                            format!("{bos}{text}")
                        } else {
                            text
                        }
                    })
                }
            };
            let got = got.unwrap_or_else(|e| format!("<cannot render: {e}>"));
            compared += 1;
            if got != want && first_difference.is_none() {
                first_difference = Some(describe_difference(&want, &got));
            }
        }
    }
    rows.push(match first_difference {
        None => CheckRow {
            check: "template".into(),
            status: "ok".into(),
            result: format!("same prompt text on {compared} conversation(s)"),
        },
        Some(d) => CheckRow {
            check: "template".into(),
            status: "FAIL".into(),
            result: format!("renders differently from the trained template: {d}"),
        },
    });
    Ok(())
}

/// Where two renderings part, with a little context.
fn describe_difference(want: &str, got: &str) -> String {
    let at = go::first_difference(want, got);
    format!(
        "at byte {at}, trained {:?} but export {:?}",
        go::around(want, at),
        go::around(got, at)
    )
}

fn compare_tokenizers(
    trained: &Tokenizer,
    export: &Tokenizer,
    samples: &Samples,
    template: &ChatTemplate,
    rows: &mut Vec<CheckRow>,
) -> Result<()> {
    let mut texts: Vec<String> = samples
        .conversations
        .iter()
        .map(|c| template.render(c, false))
        .collect::<Result<_>>()?;
    texts.push(MULTILINGUAL.into());
    let mut first: Option<String> = None;
    for text in &texts {
        let (a, b) = (trained.encode(text)?, export.encode(text)?);
        if a != b && first.is_none() {
            let at = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            first = Some(format!(
                "{} vs {} ids; first difference at token {at} of {:?}",
                a.len(),
                b.len(),
                text.chars().take(60).collect::<String>()
            ));
        }
    }
    if trained.bos_token != export.bos_token || trained.text_bos() != export.text_bos() {
        first.get_or_insert_with(|| {
            format!(
                "BOS differs: trained {:?} (added to text: {}), export {:?} (added: {})",
                trained.bos_token,
                trained.text_bos().is_some(),
                export.bos_token,
                export.text_bos().is_some()
            )
        });
    }
    rows.push(match first {
        None => CheckRow {
            check: "tokenizer".into(),
            status: "ok".into(),
            result: format!("same ids on {} text(s), multilingual included", texts.len()),
        },
        Some(d) => CheckRow {
            check: "tokenizer".into(),
            status: "FAIL".into(),
            result: d,
        },
    });
    Ok(())
}

const MULTILINGUAL: &str = "Grüße aus Köln — naïve café, 北京欢迎你, こんにちは世界, Привет, мир! مرحبا بالعالم 🙂👍\n\tfn main() {\n        println!(\"{}\", 12345 + 678);\n    }";

/// One greedy continuation, with the trained model's margin (top-1 minus
/// top-2 logit) at each step.
struct Greedy {
    ids: Vec<u32>,
    margins: Vec<f32>,
    text: String,
    /// The stop token that ended it, if one did.
    stopped_on: Option<u32>,
}

fn greedy_run(
    model: &mut Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    options: &CheckOptions,
) -> Result<Greedy> {
    // The prompt's end, where the model sees fewer positions than the
    // prompt and the continuation need.
    let prompt = match model.max_positions() {
        Some(limit) if prompt.len() + options.new_tokens > limit => {
            let keep = limit.saturating_sub(options.new_tokens).max(1);
            &prompt[prompt.len().saturating_sub(keep)..]
        }
        _ => prompt,
    };
    let mut cache = model.new_cache();
    let input = Array::from_slice(
        &prompt.iter().map(|&t| t as i32).collect::<Vec<_>>(),
        &[1, prompt.len() as i32],
    );
    let mut logits = crate::generate::last_logits(model.forward(&input, Some(&mut cache))?)?;
    let (mut ids, mut margins, mut stopped_on) = (Vec::new(), Vec::new(), None);
    for _ in 0..options.new_tokens {
        let (best, margin) = top_two(&logits);
        margins.push(margin);
        if tokenizer.stop_ids.contains(&best) {
            stopped_on = Some(best);
            break;
        }
        ids.push(best);
        let input = Array::from_slice(&[best as i32], &[1, 1]);
        logits = crate::generate::last_logits(model.forward(&input, Some(&mut cache))?)?;
    }
    let text = tokenizer.decode(&ids)?;
    Ok(Greedy {
        ids,
        margins,
        text,
        stopped_on,
    })
}

/// The most likely token and its lead over the runner-up.
fn top_two(logits: &[f32]) -> (u32, f32) {
    let (mut best, mut first, mut second) = (0usize, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        if l > first {
            second = first;
            first = l;
            best = i;
        } else if l > second {
            second = l;
        }
    }
    (best as u32, first - second)
}

fn prompt_ids(
    prompt: &Prompt,
    template: Option<&PromptTemplate>,
    tokenizer: &Tokenizer,
) -> Result<Vec<u32>> {
    let ids = match prompt {
        Prompt::Chat(messages) => {
            let text = match template {
                Some(PromptTemplate::Jinja(t)) => t.render(messages, true)?,
                Some(PromptTemplate::Ollama(t)) => {
                    go::render_ollama(&t.template, messages, t.system.as_deref())?
                }
                None => {
                    return Err(Error::Invalid(
                        "the export has no chat template to prompt it with".into(),
                    ))
                }
            };
            let mut ids = tokenizer.encode(&text)?;
            // Ollama (and llama.cpp) put the BOS in front themselves.
            if matches!(template, Some(PromptTemplate::Ollama(_))) {
                if let Some(bos) = tokenizer.text_bos() {
                    if ids.first() != Some(&bos) {
                        ids.insert(0, bos);
                    }
                }
            }
            ids
        }
        Prompt::Text(text) => {
            let mut ids = tokenizer.encode(text)?;
            if let Some(bos) = tokenizer.text_bos() {
                ids.insert(0, bos);
            }
            ids
        }
    };
    if ids.is_empty() {
        return Err(Error::Invalid("an empty prompt".into()));
    }
    Ok(ids)
}

/// Greedy continuations of the export against the trained model's;
/// returns (identical, compared).
fn compare_greedy(
    reference: &Reference,
    trained_template: &ChatTemplate,
    view: &mut ExportView,
    samples: &Samples,
    export: &Exported,
    options: &CheckOptions,
    rows: &mut Vec<CheckRow>,
) -> Result<(usize, usize)> {
    let tolerance = export.tolerance();
    let (mut identical, mut ties, mut failures) = (0, Vec::new(), Vec::new());
    for (i, (prompt, want)) in samples.prompts.iter().zip(&reference.greedy).enumerate() {
        let template = match &view.template {
            ExportTemplate::Jinja(Some(t)) => PromptTemplate::Jinja(t),
            ExportTemplate::Ollama(t) => PromptTemplate::Ollama(t),
            // Adapters run with the template the run trained with; an export
            // without one has failed the template row already.
            ExportTemplate::Base | ExportTemplate::Jinja(None) => {
                PromptTemplate::Jinja(trained_template)
            }
        };
        let ids = prompt_ids(prompt, Some(&template), &view.tokenizer)?;
        let got = greedy_run(&mut view.model, &view.tokenizer, &ids, options)?;
        if got.text == want.text && got.stopped_on.is_some() == want.stopped_on.is_some() {
            identical += 1;
            continue;
        }
        let at = want
            .ids
            .iter()
            .zip(&got.ids)
            .position(|(a, b)| a != b)
            .unwrap_or(want.ids.len().min(got.ids.len()));
        let margin = want.margins.get(at).copied().unwrap_or(f32::INFINITY);
        if margin <= tolerance.tie_margin || !tolerance.greedy_identical {
            ties.push(format!(
                "#{} parts at token {at} (trained margin {margin:.3})",
                i + 1
            ));
        } else {
            failures.push(format!(
                "#{} parts at token {at} where the trained model was sure (margin {margin:.2}): trained {:?}, export {:?}",
                i + 1,
                want.text,
                got.text
            ));
        }
    }
    let total = reference.greedy.len();
    let mut result = format!(
        "{identical} of {total} continuations identical ({} tokens each at most)",
        options.new_tokens
    );
    if !ties.is_empty() {
        result.push_str(&format!("; {}", ties.join(", ")));
    }
    let status = if !failures.is_empty() {
        result.push_str(&format!("; {}", failures.join("; ")));
        "FAIL"
    } else if tolerance.greedy_identical {
        "ok"
    } else {
        "note"
    };
    rows.push(CheckRow {
        check: "greedy".into(),
        status: status.into(),
        result,
    });
    Ok((identical, total))
}

/// Whether the export stops where the trained model stops: each stop token
/// the trained model ended a reply with is among the export's stops.
fn stop_row(reference: &Reference, view: &ExportView) -> Option<CheckRow> {
    let used: Vec<u32> = reference
        .greedy
        .iter()
        .filter_map(|g| g.stopped_on)
        .collect();
    if used.is_empty() {
        return None;
    }
    let missing: Vec<String> = used
        .iter()
        .filter(|id| match &view.template {
            ExportTemplate::Ollama(t) => {
                let text = view
                    .tokenizer
                    .decode_with_special(&[**id])
                    .unwrap_or_default();
                !t.stops.iter().any(|s| s == &text)
            }
            _ => !view.tokenizer.stop_ids.contains(id),
        })
        .map(|id| {
            view.tokenizer
                .decode_with_special(&[*id])
                .unwrap_or_else(|_| id.to_string())
        })
        .collect();
    Some(if missing.is_empty() {
        CheckRow {
            check: "stops".into(),
            status: "ok".into(),
            result: "every end-of-turn token the trained model stopped on stops the export".into(),
        }
    } else {
        CheckRow {
            check: "stops".into(),
            status: "FAIL".into(),
            result: format!(
                "the trained model ends replies with {}, which does not stop the export (replies would run on)",
                missing.join(", ")
            ),
        }
    })
}

/// Per-token NLL of each text under `model`.
fn texts_nll(model: &mut Model, texts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
    texts
        .iter()
        .map(|ids| {
            let all: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
            let n = all.len() as i32 - 1;
            let inputs = Array::from_slice(&all[..n as usize], &[1, n]);
            let targets = Array::from_slice(&all[1..], &[1, n]);
            let nll = crate::eval::sequence_nll(model, &inputs, &targets, None)?
                .as_dtype(mlx_rs::Dtype::Float32)?
                .reshape(&[-1])?;
            nll.eval()?;
            Ok(nll.as_slice::<f32>().to_vec())
        })
        .collect()
}

fn perplexity(nll: &[Vec<f32>]) -> f64 {
    let (sum, count) = nll
        .iter()
        .flatten()
        .fold((0f64, 0usize), |(s, c), &x| (s + x as f64, c + 1));
    (sum / count.max(1) as f64).exp()
}

/// Root-mean-square difference of per-token NLL.
fn rms_distance(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (sum, count) = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .fold((0f64, 0usize), |(s, c), (&x, &y)| {
            (s + ((x - y) as f64).powi(2), c + 1)
        });
    (sum / count.max(1) as f64).sqrt()
}

/// A lost adapter: the export is nearer the base than the trained model.
fn adapter_row(trained: &[Vec<f32>], base: &[Vec<f32>], export: &[Vec<f32>]) -> CheckRow {
    let effect = rms_distance(trained, base);
    let to_trained = rms_distance(export, trained);
    let to_base = rms_distance(export, base);
    let figures = format!(
        "per-token NLL distance (RMS): export–trained {to_trained:.4}, export–base {to_base:.4}, trained–base {effect:.4}"
    );
    if effect < 1e-4 {
        return CheckRow {
            check: "adapter".into(),
            status: "note".into(),
            result: format!("the adapter changes the model too little to tell ({figures})"),
        };
    }
    if to_base < to_trained {
        CheckRow {
            check: "adapter".into(),
            status: "FAIL".into(),
            result: format!(
                "the export behaves like the base model, not the trained one: the adapter is lost ({figures})"
            ),
        }
    } else {
        CheckRow {
            check: "adapter".into(),
            status: "ok".into(),
            result: format!("kept ({figures})"),
        }
    }
}

pub(crate) fn size_of(path: &Path) -> u64 {
    if path.is_file() {
        return std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| size_of(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}
