//! The export check: every export of a trained run passes it, and it fails
//! an export with the wrong chat template or without the adapter.

mod common;

use std::path::Path;

use finetune::export::check::{check_export, check_run_export, CheckOptions, Exported, Subject};
use finetune::export::{export_run, export_run_gguf, export_run_gguf_lora, ExportFormat};
use finetune::gguf::mix::FileType;
use finetune::model::{self, LoadOptions};
use finetune::runs::Run;

/// A tiny model trained for a few steps in a run folder under `root`.
fn trained_run(root: &Path) -> Run {
    let mut config = common::tiny_config(root, 12);
    let run = Run::create(&root.join("runs"), "check").unwrap();
    config.output = run.adapters_dir();
    run.write_config(&config).unwrap();
    common::train_events(&config);
    run
}

fn options() -> CheckOptions {
    CheckOptions {
        examples: 3,
        new_tokens: 8,
        max_tokens: 64,
    }
}

fn failed_rows(report: &finetune::export::check::CheckReport) -> Vec<String> {
    report
        .rows
        .iter()
        .filter(|r| r.status == "FAIL")
        .map(|r| r.check.clone())
        .collect()
}

#[test]
fn every_export_of_a_trained_run_passes_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    let mut exports = Vec::new();
    for format in [ExportFormat::Mlx, ExportFormat::Peft, ExportFormat::Fused] {
        let path = export_run(&run, format, None).unwrap();
        exports.push(match format {
            ExportFormat::Fused => Exported::Fused(path),
            _ => Exported::Adapters(path),
        });
    }
    for file_type in [FileType::F16, FileType::Q8_0, FileType::Q4_K_M] {
        let report = export_run_gguf(&run, file_type, None, &mut |_, _| {}).unwrap();
        exports.push(Exported::Gguf(report.path, file_type));
    }
    let lora = export_run_gguf_lora(&run, None).unwrap();
    exports.push(Exported::GgufLora(lora.path));
    let ollama =
        finetune::export::export_run_ollama(&run, FileType::Q8_0, None, &mut |_, _| {}).unwrap();
    let folder = ollama.path.parent().unwrap().to_path_buf();
    assert!(folder.join("Modelfile").is_file());
    exports.push(Exported::Ollama(folder, FileType::Q8_0));

    for exported in &exports {
        let report = check_run_export(&run, exported, &options()).unwrap();
        assert!(
            report.passed,
            "{}: {:?}\n{}",
            exported.path().display(),
            report.failures(),
            report.table()
        );
        let adapter = report.rows.iter().find(|r| r.check == "adapter").unwrap();
        assert_eq!(adapter.status, "ok", "{}", report.table());
        let md = report.write_beside().unwrap();
        assert!(md.exists() && md.with_extension("json").exists());
        assert!(report.perplexity_trained < report.perplexity_base.unwrap());
    }
}

/// An export whose chat template is not the one the run trained with (here
/// Llama 3's turns instead of ChatML's) fails on the template row.
#[test]
fn the_check_catches_a_wrong_template() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    let config = run.read_config().unwrap();
    let mut loaded = model::load(
        &config.model,
        &LoadOptions {
            dequantize: true,
            ..Default::default()
        },
    )
    .unwrap();
    finetune::lora::load_adapters(&mut loaded.model, &run.adapters_dir()).unwrap();
    finetune::export::fuse_adapters(&mut loaded).unwrap();
    let wrong = "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
    loaded.chat_template =
        Some(finetune::chat_template::ChatTemplate::new(wrong, None, None).unwrap());
    let path = tmp.path().join("wrong-template.gguf");
    finetune::export::gguf::write_gguf(&loaded, &path, FileType::F16, "wrong").unwrap();

    let report = check_run_export(&run, &Exported::Gguf(path, FileType::F16), &options()).unwrap();
    assert!(!report.passed, "{}", report.table());
    assert!(
        failed_rows(&report).contains(&"template".to_string()),
        "{}",
        report.table()
    );
}

/// An export of the base alone (the adapter dropped) fails on the adapter
/// row: it is nearer the base than the trained model.
#[test]
fn the_check_catches_a_dropped_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    let config = run.read_config().unwrap();
    let base = model::load(&config.model, &LoadOptions::default()).unwrap();
    let path = tmp.path().join("no-adapter.gguf");
    finetune::export::gguf::write_gguf(&base, &path, FileType::Q8_0, "base").unwrap();

    let report = check_run_export(&run, &Exported::Gguf(path, FileType::Q8_0), &options()).unwrap();
    assert!(!report.passed, "{}", report.table());
    let failed = failed_rows(&report);
    assert!(
        failed.contains(&"adapter".to_string()),
        "{}",
        report.table()
    );
    assert!(
        !failed.contains(&"template".to_string()),
        "{}",
        report.table()
    );
}

/// An Ollama folder whose Modelfile TEMPLATE was edited to name the
/// assistant's turn differently fails on the template row.
#[test]
fn the_check_catches_a_wrong_modelfile_template() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run(tmp.path());
    let report =
        finetune::export::export_run_ollama(&run, FileType::F16, None, &mut |_, _| {}).unwrap();
    let folder = report.path.parent().unwrap().to_path_buf();
    let modelfile = folder.join("Modelfile");
    let text = std::fs::read_to_string(&modelfile).unwrap();
    let broken = text.replace("<|im_start|>assistant", "<|im_start|>bot");
    assert_ne!(text, broken);
    std::fs::write(&modelfile, broken).unwrap();

    let report =
        check_run_export(&run, &Exported::Ollama(folder, FileType::F16), &options()).unwrap();
    assert!(!report.passed, "{}", report.table());
    assert!(
        failed_rows(&report).contains(&"template".to_string()),
        "{}",
        report.table()
    );
}

/// `ft models convert` is checked against the model it read, on fixed
/// conversations, with no adapter row.
#[test]
fn a_converted_model_is_checked_against_its_source() {
    let tmp = tempfile::tempdir().unwrap();
    let source = common::TinyModel::default().write(tmp.path());
    let loaded = model::load(&source, &LoadOptions::default()).unwrap();
    let path = tmp.path().join("model-f16.gguf");
    finetune::export::gguf::write_gguf(&loaded, &path, FileType::F16, "tiny").unwrap();

    let report = check_export(
        &Subject::of_model(&source),
        &Exported::Gguf(path, FileType::F16),
        &options(),
    )
    .unwrap();
    assert!(report.passed, "{}", report.table());
    assert!(report.rows.iter().all(|r| r.check != "adapter"));
    assert!(
        report.perplexity_delta_percent.abs() < 0.5,
        "{}",
        report.table()
    );
}

/// Every built-in template `--template` offers can go to Ollama: its
/// translation renders what the Jinja template renders.
#[test]
fn every_built_in_template_translates_to_ollama() {
    let tmp = tempfile::tempdir().unwrap();
    let loaded = model::load(
        &common::TinyModel::default().write(tmp.path()),
        &LoadOptions::default(),
    )
    .unwrap();
    let mut failed = Vec::new();
    for name in finetune::data::templates::names() {
        let resolved =
            finetune::data::templates::resolve(Some(name), None, &loaded.tokenizer).unwrap();
        for adds_bos in [false, true] {
            if let Err(e) = finetune::export::go_template::translate(&resolved.template, adds_bos) {
                failed.push(format!("{name} (adds BOS: {adds_bos}): {e}"));
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
