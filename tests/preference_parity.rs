//! Parity with TRL: for the fixed batch, adapter and tiny Llama of
//! `tests/fixtures/preference` (made by `scripts/fixtures/preference.sh`
//! with TRL 1.16), FineTune's DPO, label-smoothed DPO, IPO and ORPO losses,
//! rewards and LoRA gradients match TRL's.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::max_abs_diff;
use finetune::data::Example;
use finetune::lora;
use finetune::mlx_rs::{nn, Array};
use finetune::model::{self, LoadOptions, Model};
use finetune::train::batches::make_batch;
use finetune::train::preference::{pair_rows, reference_logps, sequence_mask, PreferenceLoss};
use finetune::train::Method;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Fixture {
    model: Model,
    examples: Vec<Example>,
    reference: HashMap<String, Array>,
}

/// The tiny Llama with TRL's adapter, and the pairs as examples (2i chosen,
/// 2i + 1 rejected), only the answers trained.
fn load() -> Fixture {
    let mut loaded = model::load(&fixture("parity/llama"), &LoadOptions::default()).unwrap();
    lora::load_adapters(&mut loaded.model, &fixture("preference/adapter")).unwrap();
    let text = std::fs::read_to_string(fixture("preference/batch.json")).unwrap();
    let pairs: Vec<HashMap<String, Vec<u32>>> = serde_json::from_str(&text).unwrap();
    let mut examples = Vec::new();
    for pair in &pairs {
        for side in ["chosen", "rejected"] {
            let (prompt, answer) = (&pair["prompt"], &pair[side]);
            examples.push(Example {
                tokens: [prompt.as_slice(), answer.as_slice()].concat(),
                trained: [vec![false; prompt.len()], vec![true; answer.len()]].concat(),
                truncated: false,
            });
        }
    }
    let reference = Array::load_safetensors(fixture("preference/reference.safetensors")).unwrap();
    Fixture {
        model: loaded.model,
        examples,
        reference,
    }
}

/// Our gradient key for a PEFT one, and whether it is transposed there.
fn our_key(peft: &str) -> String {
    let stem = peft.strip_prefix("base_model.model.").unwrap();
    stem.replace(".lora_A.weight", ".lora_a")
        .replace(".lora_B.weight", ".lora_b")
}

fn check(name: &str, loss: PreferenceLoss) {
    let Fixture {
        mut model,
        examples,
        reference,
    } = load();
    let want = |key: &str| -> &Array {
        reference
            .get(&format!("{name}.{key}"))
            .unwrap_or_else(|| panic!("{name}.{key} not in the fixture"))
    };
    let rows = pair_rows(&[0, 1, 2]);
    let batch = make_batch(&examples, &rows, 0, 8);
    let (inputs, targets, mask) = (batch.inputs, batch.targets, batch.mask);
    let extra = if loss.method == Method::Orpo {
        sequence_mask(&examples, &rows, inputs.shape()[1] as usize)
    } else {
        let logps = reference_logps(&mut model, &inputs, &targets, &mask).unwrap();
        let (rc, rr) = (want("ref_chosen_logps"), want("ref_rejected_logps"));
        let expected = finetune::mlx_rs::ops::concatenate(&[rc, rr], 0).unwrap();
        let d = max_abs_diff(&logps, &expected);
        assert!(d < 1e-4, "{name}: reference log-probs differ by {d}");
        logps
    };
    let mut step = nn::value_and_grad(move |model: &mut Model, args: Vec<Array>| {
        loss.compute(model, &args[0], &args[1], &args[2], args.get(3), true)
    });
    let (values, grads) = step(&mut model, vec![inputs, targets, mask, extra]).unwrap();
    for (i, key) in ["loss", "chosen_rewards", "rejected_rewards"]
        .iter()
        .enumerate()
    {
        let d = max_abs_diff(&values[i], want(key));
        // IPO's loss is ~25: compare relative to its size.
        let scale = magnitude(want(key));
        assert!(d / scale < 1e-5, "{name} {key}: |Δ| {d}");
    }
    let mut compared = 0;
    for (key, expected) in &reference {
        let Some(peft) = key.strip_prefix(&format!("{name}.grad.")) else {
            continue;
        };
        let ours = grads
            .get(our_key(peft).as_str())
            .unwrap_or_else(|| panic!("{name}: no gradient for {}", our_key(peft)));
        let ours = ours.t();
        let scale = magnitude(expected);
        let d = max_abs_diff(&ours, expected);
        assert!(
            d / scale < 1e-4,
            "{name} {peft}: gradient |Δ| {d} (scale {scale})"
        );
        compared += 1;
    }
    assert_eq!(compared, 8, "{name}: every LoRA A and B of both layers");
}

#[test]
fn dpo_matches_trl() {
    check(
        "dpo",
        PreferenceLoss {
            method: Method::Dpo,
            beta: 0.1,
            label_smoothing: 0.0,
        },
    );
}

#[test]
fn label_smoothed_dpo_matches_trl() {
    check(
        "dpo_ls",
        PreferenceLoss {
            method: Method::Dpo,
            beta: 0.1,
            label_smoothing: 0.2,
        },
    );
}

#[test]
fn ipo_matches_trl() {
    check(
        "ipo",
        PreferenceLoss {
            method: Method::Ipo,
            beta: 0.1,
            label_smoothing: 0.0,
        },
    );
}

#[test]
fn orpo_matches_trl() {
    check(
        "orpo",
        PreferenceLoss {
            method: Method::Orpo,
            beta: 0.1,
            label_smoothing: 0.0,
        },
    );
}

/// The largest absolute value of `a`, at least 1: tolerances are relative to
/// a value's size (IPO's loss is ~25), absolute below 1.
fn magnitude(a: &Array) -> f32 {
    a.abs()
        .unwrap()
        .max(None)
        .unwrap()
        .item_exact::<f32>()
        .max(1.0)
}
