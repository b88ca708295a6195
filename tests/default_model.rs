//! The bundled default model, SmolLM2-135M-Instruct, straight from its Q4_1
//! GGUF: tokenizer, chat template, perplexity and a greedy chat answer.

mod common;

use std::process::Command;

use finetune::chat_template::Message;
use finetune::eval::perplexity;
use finetune::generate::{generate, GenerateOptions};
use finetune::model::{self, LoadOptions};

const PARAGRAPH: &str = "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars \
in Paris, France. It is named after the engineer Gustave Eiffel, whose company designed and \
built the tower from 1887 to 1889. Locally nicknamed \"La dame de fer\", it was constructed as \
the centrepiece of the 1889 World's Fair. Although initially criticised by some of France's \
leading artists and intellectuals for its design, it has since become a global cultural icon \
of France and one of the most recognisable structures in the world.";

#[test]
fn tokenizer_matches_the_gguf_vocabulary() {
    let loaded = model::load(&common::default_model(), &LoadOptions::default()).unwrap();
    let t = &loaded.tokenizer;
    assert_eq!(t.vocab_size(), 49152);
    // Special tokens are single ids, never split by BPE.
    assert_eq!(t.encode("<|im_start|>").unwrap(), vec![1]);
    assert_eq!(t.encode("<|im_end|>").unwrap(), vec![2]);
    assert_eq!(t.bos_token.as_deref(), Some("<|im_start|>"));
    assert!(t.stop_ids.contains(&2));
    // SmolLM2 splits digits one by one.
    let digits = t.encode("2024").unwrap();
    assert_eq!(digits.len(), 4, "{digits:?}");
    let text = "Héllo, wörld! Ünïcode → ok 123";
    assert_eq!(t.decode(&t.encode(text).unwrap()).unwrap(), text);
}

#[test]
fn chat_template_renders_chatml_with_the_default_system_prompt() {
    let loaded = model::load(&common::default_model(), &LoadOptions::default()).unwrap();
    let template = loaded.chat_template.expect("SmolLM2 ships a chat template");
    let text = template
        .render(&[Message::new("user", "Hi there")], true)
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn perplexity_on_english_prose_is_low() {
    // With llama.cpp's q/k permutation left in, this is ~3x higher.
    let mut loaded = model::load(&common::default_model(), &LoadOptions::default()).unwrap();
    let ids = loaded.tokenizer.encode(PARAGRAPH).unwrap();
    let ppl = perplexity(&mut loaded.model, &ids).unwrap();
    eprintln!("perplexity {ppl:.3} over {} tokens", ids.len());
    assert!(ppl > 1.0 && ppl < 20.0, "perplexity {ppl}");
}

#[test]
fn perplexity_is_within_one_percent_of_transformers() {
    // Reference: transformers' own GGUF loader (dequantized to float32) on
    // the same paragraph, stored by scripts/fixtures/make_parity.py.
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures.join("smollm2_perplexity.json")).unwrap(),
    )
    .unwrap();
    let text = std::fs::read_to_string(fixtures.join("paragraph.txt")).unwrap();
    let mut loaded = model::load(&common::default_model(), &LoadOptions::default()).unwrap();
    let ids = loaded.tokenizer.encode(&text).unwrap();
    let expected_ids: Vec<u32> = serde_json::from_value(reference["tokens"].clone()).unwrap();
    assert_eq!(ids, expected_ids, "tokenization differs from transformers'");
    let ppl = perplexity(&mut loaded.model, &ids).unwrap();
    let expected = reference["perplexity"].as_f64().unwrap();
    eprintln!("perplexity {ppl:.4}, transformers {expected:.4}");
    assert!(
        (ppl - expected).abs() / expected < 0.01,
        "perplexity {ppl} vs transformers' {expected}"
    );
}

#[test]
fn greedy_chat_answer_names_paris() {
    let mut loaded = model::load(&common::default_model(), &LoadOptions::default()).unwrap();
    let prompt = loaded
        .chat_template
        .as_ref()
        .unwrap()
        .render(
            &[Message::new("user", "What is the capital of France?")],
            true,
        )
        .unwrap();
    let ids = loaded.tokenizer.encode(&prompt).unwrap();
    let mut streamed = String::new();
    let options = GenerateOptions {
        max_tokens: 24,
        ..Default::default()
    };
    let result = generate(
        &mut loaded.model,
        &loaded.tokenizer,
        &ids,
        &options,
        |piece| streamed.push_str(piece),
    )
    .unwrap();
    assert!(result.text.contains("Paris"), "{}", result.text);
    assert_eq!(
        streamed, result.text,
        "streamed pieces add up to the answer"
    );
    assert!(result.stopped, "the model ends its turn with <|im_end|>");
}

#[test]
fn ft_generate_prints_only_the_completion() {
    let out = Command::new(env!("CARGO_BIN_EXE_ft"))
        .arg("generate")
        .arg(common::default_model())
        .args(["--chat", "--prompt", "What is the capital of France?"])
        .args(["--temperature", "0", "--max-tokens", "24"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("Paris"), "{stdout}");
    assert!(!stdout.contains("<|im"), "special tokens leaked: {stdout}");
}

#[test]
fn ft_generate_rejects_a_missing_model_with_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(["generate", "/no/such/model.gguf", "--prompt", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/no/such/model.gguf"), "{stderr}");
}

#[test]
fn parameter_count_matches_the_published_size() {
    let loaded = model::load(&common::default_model(), &LoadOptions::default()).unwrap();
    // SmolLM2-135M: 134,515,008 parameters (tied head), whether quantized or not.
    assert_eq!(loaded.model.parameter_count(), 134_515_008);
}

#[test]
fn ft_convert_turns_the_gguf_into_a_hugging_face_folder_with_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm2");
    let status = Command::new(env!("CARGO_BIN_EXE_ft"))
        .arg("convert")
        .arg(common::default_model())
        .arg("--output")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["num_key_value_heads"], 3);
    assert_eq!(config["tie_word_embeddings"], true);

    let options = LoadOptions {
        dequantize: true,
        ..Default::default()
    };
    let mut gguf = model::load(&common::default_model(), &options).unwrap();
    let mut folder = model::load(&out, &LoadOptions::default()).unwrap();
    let ids = gguf.tokenizer.encode("The capital of France is").unwrap();
    assert_eq!(
        folder.tokenizer.encode("The capital of France is").unwrap(),
        ids
    );
    let input = finetune::mlx_rs::Array::from_slice(
        &ids.iter().map(|&i| i as i32).collect::<Vec<_>>(),
        &[1, ids.len() as i32],
    );
    let a = gguf.model.forward(&input, None).unwrap();
    let b = folder.model.forward(&input, None).unwrap();
    assert_eq!(common::max_abs_diff(&a, &b), 0.0);
}

/// Two steps of the default model on King Lear, cut into full-length
/// windows (every batch is the widest).
fn two_steps_on_lear(
    tmp: &std::path::Path,
    batch_size: usize,
    max_length: usize,
    grad_checkpoint: bool,
) -> finetune::train::TrainConfig {
    finetune::train::TrainConfig {
        model: common::default_model(),
        data: finetune::paths::cache_dir().join("data/real/lear.txt"),
        output: tmp.join("adapters"),
        iters: Some(2),
        batch_size,
        max_length,
        steps_per_eval: 0,
        steps_per_report: 1,
        grad_checkpoint,
        ..Default::default()
    }
}

#[test]
fn the_memory_estimate_is_within_a_quarter_of_the_measured_peak() {
    // Configurations other than those the estimate was fitted on.
    for (batch, length, grad_checkpoint) in
        [(2usize, 64usize, false), (1, 256, false), (2, 256, true)]
    {
        let tmp = tempfile::tempdir().unwrap();
        let config = two_steps_on_lear(tmp.path(), batch, length, grad_checkpoint);
        let mut events = Vec::new();
        let mut observer = |e: &finetune::train::TrainEvent| events.push(e.clone());
        let summary = finetune::train::train(
            &config,
            &mut observer,
            &finetune::train::TrainControl::default(),
        )
        .unwrap();
        let Some(finetune::train::TrainEvent::Started {
            memory_estimate: Some(estimate),
            ..
        }) = events.first()
        else {
            panic!("no estimate")
        };
        let ratio = estimate.total as f64 / summary.peak_memory_bytes as f64;
        eprintln!(
            "batch {batch} x {length}, checkpointing {grad_checkpoint}: estimate {} vs measured peak {} (ratio {ratio:.2})",
            estimate.total, summary.peak_memory_bytes
        );
        assert!((0.75..=1.25).contains(&ratio), "ratio {ratio:.2}");
    }
}

#[test]
fn gradient_checkpointing_lowers_the_peak_with_the_same_losses() {
    let run = |grad_checkpoint: bool| {
        let tmp = tempfile::tempdir().unwrap();
        let config = two_steps_on_lear(tmp.path(), 2, 256, grad_checkpoint);
        let mut losses = Vec::new();
        let mut observer = |e: &finetune::train::TrainEvent| {
            if let finetune::train::TrainEvent::Step { loss, .. } = e {
                losses.push(*loss);
            }
        };
        let summary = finetune::train::train(
            &config,
            &mut observer,
            &finetune::train::TrainControl::default(),
        )
        .unwrap();
        (losses, summary.peak_memory_bytes)
    };
    let (losses, peak) = run(false);
    let (losses_gc, peak_gc) = run(true);
    eprintln!("peak {peak} -> {peak_gc} with checkpointing; losses {losses:?} {losses_gc:?}");
    for (x, y) in losses.iter().zip(&losses_gc) {
        assert!((x - y).abs() <= 1e-5 * x.abs(), "{x} vs {y}");
    }
    assert!(
        (peak_gc as f64) < 0.8 * peak as f64,
        "checkpointing did not lower the peak: {peak} -> {peak_gc}"
    );
}
