//! The real Gemma 3 270M Q4_K_M GGUF (`scripts/fetch_gemma3.sh`, run by
//! setup) against transformers on the same file (transformers dequantizes
//! GGUF itself): `tests/fixtures/gemma3_270m/reference.json`, made by
//! `scripts/fixtures/gemma3_reference.py`. One load serves every check: it
//! is a 270M-parameter model with a 262,144-token vocabulary.

mod common;

use std::path::PathBuf;

use finetune::mlx_rs::{ops::indexing::IndexOp, Array};
use finetune::model::{self, LoadOptions};
use serde_json::Value;

fn gguf_path() -> PathBuf {
    let path = finetune::paths::cache_dir().join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(
        path.exists(),
        "{} is missing: run `make setup` (scripts/fetch_gemma3.sh)",
        path.display()
    );
    path
}

fn reference() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gemma3_270m/reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn row(ids: &[u32]) -> Array {
    let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    Array::from_slice(&ids, &[1, ids.len() as i32])
}

#[test]
fn gemma3_gguf_is_described_from_its_header() {
    let summary = model::gguf::describe(&gguf_path()).unwrap();
    assert_eq!(summary.architecture, "gemma3");
    assert!(summary.unsupported.is_none(), "{:?}", summary.unsupported);
    let count = |t: &str| summary.tensor_types.get(t).copied().unwrap_or(0);
    assert_eq!(
        (
            count("F32"),
            count("Q5_0"),
            count("Q4_K"),
            count("Q8_0"),
            count("Q6_K")
        ),
        (109, 81, 27, 10, 9)
    );
}

#[test]
fn gemma3_gguf_matches_transformers_on_the_same_file() {
    let reference = reference();
    let started = std::time::Instant::now();
    let mut loaded = model::load(&gguf_path(), &LoadOptions::default()).unwrap();
    eprintln!("loaded in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(loaded.model.model_type(), "gemma3_text");
    let tokenizer = &loaded.tokenizer;
    assert!(tokenizer.add_bos_token, "Gemma's GGUF asks for a BOS");

    for prompt in reference["prompts"].as_array().unwrap() {
        let name = prompt["name"].as_str().unwrap();
        let expected_ids = ids(&prompt["ids"]);
        // The tokenizer gives transformers' ids (transformers adds the BOS).
        let mut got_ids = vec![tokenizer.bos_token_id().unwrap()];
        got_ids.extend(tokenizer.encode(prompt["text"].as_str().unwrap()).unwrap());
        assert_eq!(got_ids, expected_ids, "{name}: token ids");

        // The prompt and transformers' greedy continuation in one pass.
        let greedy = ids(&prompt["greedy_ids"]);
        let margins: Vec<f64> = prompt["greedy_margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        let mut all = expected_ids.clone();
        all.extend(&greedy);
        let logits = loaded.model.forward(&row(&all), None).unwrap();
        let last = expected_ids.len() as i32 - 1;

        // The last prompt position: transformers' top 20 logits and logsumexp.
        let at_last = logits.index((0, last, ..));
        let values = at_last.as_slice::<f32>();
        let mut worst = 0f32;
        for pair in prompt["top20"].as_array().unwrap() {
            let (id, logit) = (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap(),
            );
            worst = worst.max((values[id] - logit as f32).abs());
        }
        let lse: f32 = at_last.logsumexp(None).unwrap().item_exact();
        let lse_ref = prompt["logsumexp"].as_f64().unwrap() as f32;
        eprintln!(
            "{name}: top-20 logits max |Δ| {worst:.2e}, logsumexp Δ {:.2e}",
            lse - lse_ref
        );
        assert!(worst < 1e-3, "{name}: top-20 logits differ by {worst}");
        assert!(
            (lse - lse_ref).abs() < 2e-2,
            "{name}: logsumexp {lse} vs {lse_ref}"
        );

        // Greedy decoding picks transformers' token at every step, except
        // where transformers' own margin is within our numerical error.
        for (step, (&want, &margin)) in greedy.iter().zip(&margins).enumerate() {
            let pos = last + step as i32;
            let step_logits = logits.index((0, pos, ..));
            let values = step_logits.as_slice::<f32>();
            let picked = (0..values.len())
                .max_by(|&a, &b| values[a].total_cmp(&values[b]))
                .unwrap() as u32;
            if margin > 5e-2 {
                assert_eq!(picked, want, "{name}: greedy step {step} (margin {margin})");
            }
        }
    }

    // Perplexity of a fixed paragraph, with the BOS transformers adds.
    let ppl = &reference["perplexity"];
    let tokens = ids(&ppl["tokens_with_bos"]);
    let got = finetune::eval::perplexity(&mut loaded.model, &tokens).unwrap();
    let want = ppl["perplexity_with_bos"].as_f64().unwrap();
    eprintln!("perplexity {got:.4} (transformers {want:.4})");
    assert!(
        (got - want).abs() / want < 1e-3,
        "perplexity {got} vs {want}"
    );
}

#[test]
fn gemma3_gguf_generates_through_the_kv_cache_as_in_one_pass() {
    // A prompt longer than nothing in particular, decoded step by step
    // through the cache, gives the logits of a full pass.
    let mut m = model::load(&gguf_path(), &LoadOptions::default())
        .unwrap()
        .model;
    let reference = reference();
    let prompt = &reference["prompts"][1];
    let mut all = ids(&prompt["ids"]);
    all.extend(ids(&prompt["greedy_ids"]));
    let full = m.forward(&row(&all), None).unwrap();
    let mut cache = m.new_cache();
    let n = all.len();
    m.forward(&row(&all[..n - 8]), Some(&mut cache)).unwrap();
    for pos in n - 8..n {
        let step = m
            .forward(&row(&all[pos..pos + 1]), Some(&mut cache))
            .unwrap();
        let diff = common::max_abs_diff(&step, &full.index((.., pos as i32..pos as i32 + 1, ..)));
        assert!(diff < 1e-3, "position {pos}: max |Δ| {diff}");
    }
}
