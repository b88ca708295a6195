//! Adapter files: what is saved loads back to the same model, and errors
//! name the file.

mod common;

use common::{max_abs_diff, TinyModel};
use finetune::lora::{self, LoraConfig};
use finetune::mlx_rs::{self, module::ModuleParameters, Array};
use finetune::model::{self, LoadOptions};

fn tokens() -> Array {
    Array::from_slice(&[1, 40, 77, 120, 9, 15], &[1, 6])
}

/// A model with adapters whose B is non-zero, so they change the output.
fn adapted(dir: &std::path::Path, config: &LoraConfig) -> finetune::model::Model {
    let mut m = model::load(dir, &LoadOptions::default()).unwrap().model;
    lora::apply(&mut m, config).unwrap();
    mlx_rs::random::seed(11).unwrap();
    for (name, value) in m.parameters_mut().flatten() {
        if name.ends_with("lora_b") {
            *value = mlx_rs::random::normal::<f32>(value.shape(), None, 0.05, None).unwrap();
        }
    }
    m
}

#[test]
fn saved_mlx_adapters_load_back_to_the_same_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let config = LoraConfig {
        rank: 4,
        alpha: 12.0,
        num_layers: Some(1),
        targets: vec!["q_proj".into(), "down_proj".into()],
        ..Default::default()
    };
    let mut trained = adapted(&dir, &config);
    let expected = trained.forward(&tokens(), None).unwrap();
    let mut base = model::load(&dir, &LoadOptions::default()).unwrap().model;
    let base_logits = base.forward(&tokens(), None).unwrap();
    assert!(
        max_abs_diff(&expected, &base_logits) > 1e-3,
        "the adapters change the output"
    );

    let out = tmp.path().join("adapters");
    lora::save_mlx_adapters(&trained, &config, &out).unwrap();
    let mut reloaded = model::load(&dir, &LoadOptions::default()).unwrap().model;
    let read = lora::load_mlx_adapters(&mut reloaded, &out).unwrap();
    // mlx-lm's files name targets by their path inside the layer.
    let expected_config = LoraConfig {
        targets: vec!["self_attn.q_proj".into(), "mlp.down_proj".into()],
        ..config
    };
    assert_eq!(read, expected_config);
    let got = reloaded.forward(&tokens(), None).unwrap();
    assert_eq!(max_abs_diff(&got, &expected), 0.0);
}

#[test]
fn adapters_for_another_model_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let small = TinyModel::default().write(tmp.path());
    let config = LoraConfig::default();
    let out = tmp.path().join("adapters");
    lora::save_mlx_adapters(&adapted(&small, &config), &config, &out).unwrap();

    let other_root = tmp.path().join("other");
    std::fs::create_dir_all(&other_root).unwrap();
    let wider = TinyModel {
        hidden: 128,
        heads: 8,
        ..Default::default()
    }
    .write(&other_root);
    let mut m = model::load(&wider, &LoadOptions::default()).unwrap().model;
    let err = lora::load_mlx_adapters(&mut m, &out)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("adapters.safetensors") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn ft_generate_applies_an_adapter_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let config = LoraConfig::default();
    let out = tmp.path().join("adapters");
    lora::save_mlx_adapters(&adapted(&dir, &config), &config, &out).unwrap();
    let run = |extra: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_ft"))
            .arg("generate")
            .arg(&dir)
            .args(["--prompt", "hello", "--max-tokens", "8"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    };
    let with = run(&["--adapter", out.to_str().unwrap()]);
    let without = run(&[]);
    assert_ne!(with, without, "the adapter changes what the model writes");
}

#[test]
fn peft_export_has_peft_names_and_shapes_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..Default::default()
    };
    let mut trained = adapted(&dir, &config);
    let expected = trained.forward(&tokens(), None).unwrap();
    let mlx_dir = tmp.path().join("mlx");
    lora::save_mlx_adapters(&trained, &config, &mlx_dir).unwrap();

    let peft_dir = tmp.path().join("peft");
    finetune::peft::mlx_to_peft(&mlx_dir, &peft_dir, "tiny-llama").unwrap();
    let peft = Array::load_safetensors(peft_dir.join("adapter_model.safetensors")).unwrap();
    let a = &peft["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"];
    let b = &peft["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"];
    assert_eq!(a.shape(), &[4, 64], "lora_A is (r, in)");
    assert_eq!(b.shape(), &[64, 4], "lora_B is (out, r)");
    let peft_config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(peft_dir.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(peft_config["peft_type"], "LORA");
    assert_eq!(peft_config["r"], 4);
    assert_eq!(peft_config["lora_alpha"], 8.0);
    assert_eq!(peft_config["target_modules"].as_array().unwrap().len(), 7);

    // A PEFT folder loads straight onto the model, with the same result.
    let mut from_peft = model::load(&dir, &LoadOptions::default()).unwrap().model;
    lora::load_adapters(&mut from_peft, &peft_dir).unwrap();
    assert_eq!(
        max_abs_diff(&from_peft.forward(&tokens(), None).unwrap(), &expected),
        0.0
    );

    // And converts back to the very same mlx-lm tensors.
    let back = tmp.path().join("back");
    finetune::peft::peft_to_mlx(&peft_dir, &back).unwrap();
    let original = Array::load_safetensors(mlx_dir.join("adapters.safetensors")).unwrap();
    let round = Array::load_safetensors(back.join("adapters.safetensors")).unwrap();
    assert_eq!(original.len(), round.len());
    for (k, v) in &original {
        assert_eq!(v.as_slice::<f32>(), round[k].as_slice::<f32>(), "{k}");
    }
}

#[test]
fn fused_folder_computes_what_base_plus_adapter_did() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = TinyModel::default().write(tmp.path());
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..Default::default()
    };
    let mut trained = adapted(&dir, &config);
    let expected = trained.forward(&tokens(), None).unwrap();
    let adapters = tmp.path().join("adapters");
    lora::save_mlx_adapters(&trained, &config, &adapters).unwrap();

    let mut loaded = model::load(&dir, &LoadOptions::default()).unwrap();
    lora::load_adapters(&mut loaded.model, &adapters).unwrap();
    finetune::export::fuse_adapters(&mut loaded).unwrap();
    let out = tmp.path().join("fused");
    // A small shard size forces several shards and an index.
    finetune::export::write_hf_folder(&mut loaded, &out, 64 << 10).unwrap();
    assert!(out.join("model.safetensors.index.json").exists());
    assert!(out.join("tokenizer.json").exists());

    let mut fused = model::load(&out, &LoadOptions::default()).unwrap();
    assert!(!fused.model.has_lora());
    let got = fused.model.forward(&tokens(), None).unwrap();
    assert!(
        max_abs_diff(&got, &expected) < 1e-4,
        "{}",
        max_abs_diff(&got, &expected)
    );
    // The chat template travels along.
    assert!(fused.chat_template.is_some());

    // Never overwrites an existing folder.
    let err = finetune::export::write_hf_folder(&mut fused, &out, 1 << 30)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
}
