//! Every training method on every newer architecture: LoRA, DoRA, QLoRA
//! (4-bit base) and full fine-tuning, with and without packing, train the
//! tiny random Qwen3, Gemma 3, Gemma 2, Phi-3 (fused projections) and
//! windowed Mistral fixtures — the loss falls, and what was trained loads
//! back computing the same logits (adapters, or a fused folder).

mod common;

use std::path::{Path, PathBuf};

use common::{max_abs_diff, step_losses, train_events, write_chat_data};
use finetune::mlx_rs::Array;
use finetune::model::{self, LoadOptions};
use finetune::train::TrainConfig;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn config(tmp: &Path, name: &str, edit: impl FnOnce(&mut TrainConfig)) -> TrainConfig {
    let mut c = TrainConfig {
        model: fixture(name),
        data: write_chat_data(tmp, 8),
        output: tmp.join("adapters"),
        iters: Some(12),
        batch_size: 4,
        learning_rate: 1e-2,
        max_length: 64,
        steps_per_report: 1,
        steps_per_eval: 0,
        seed: 5,
        ..Default::default()
    };
    edit(&mut c);
    c
}

fn ids() -> Array {
    Array::from_slice(&[1i32, 5, 9, 33, 70, 12, 8, 2], &[1, 8])
}

fn trains_and_reloads(name: &str, method: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path(), name, |c| match method {
        "lora" => {}
        "lora+packing" => c.packing = true,
        "dora" => c.lora.dora = true,
        "qlora" => c.qlora_bits = Some(4),
        "full" => c.lora.full = true,
        other => panic!("{other}"),
    });
    let losses = step_losses(&train_events(&config));
    assert_eq!(losses.len(), 12, "{name} {method}");
    assert!(
        losses.iter().all(|l| l.is_finite()),
        "{name} {method}: {losses:?}"
    );
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < first, "{name} {method}: loss {first} → {last}");

    // What was saved computes what was trained: the base with the saved
    // adapters (or weights) against a fused Hugging Face folder of it.
    let options = LoadOptions::default();
    let mut with_adapters = model::load(&fixture(name), &options).unwrap();
    if let Some(bits) = config.qlora_bits {
        finetune::train::trainer::quantize_for_qlora(&mut with_adapters.model, bits).unwrap();
    }
    finetune::lora::load_adapters(&mut with_adapters.model, &config.output).unwrap();
    let adapted = with_adapters.model.forward(&ids(), None).unwrap();
    let base = model::load(&fixture(name), &options)
        .unwrap()
        .model
        .forward(&ids(), None)
        .unwrap();
    assert!(
        max_abs_diff(&adapted, &base) > 1e-4,
        "{name} {method}: training changed nothing"
    );
    finetune::export::fuse_adapters(&mut with_adapters).unwrap();
    let out = tmp.path().join("fused");
    finetune::export::write_hf_folder(&mut with_adapters, &out, 1 << 30).unwrap();
    let fused = model::load(&out, &options)
        .unwrap()
        .model
        .forward(&ids(), None)
        .unwrap();
    let diff = max_abs_diff(&fused, &adapted);
    assert!(
        diff < 1e-3,
        "{name} {method}: fused folder differs by {diff}"
    );
}

macro_rules! method_tests {
    ($($module:ident => $fixture:literal),* $(,)?) => {$(
        mod $module {
            #[test]
            fn lora() { super::trains_and_reloads($fixture, "lora") }
            #[test]
            fn lora_packed() { super::trains_and_reloads($fixture, "lora+packing") }
            #[test]
            fn dora() { super::trains_and_reloads($fixture, "dora") }
            #[test]
            fn qlora() { super::trains_and_reloads($fixture, "qlora") }
            #[test]
            fn full() { super::trains_and_reloads($fixture, "full") }
        }
    )*};
}

method_tests! {
    qwen3 => "qwen3",
    gemma3 => "gemma3",
    gemma2 => "gemma2",
    phi3 => "phi3",
    mistral_window => "mistral-window",
}
