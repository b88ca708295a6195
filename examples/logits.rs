//! Prints the engine's logits for fixed token ids as JSON, optionally with
//! adapters applied — the reference the interoperability scripts compare
//! other tools against.
//!
//! cargo run --example logits -- MODEL [ADAPTER_DIR] < ids.json

use std::io::Read;

use finetune::mlx_rs::Array;
use finetune::model::{self, LoadOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let model_path =
        std::path::PathBuf::from(args.next().expect("usage: logits MODEL [ADAPTER_DIR]"));
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("ids on stdin");
    let ids: Vec<i32> = serde_json::from_str(&input).expect("a JSON list of token ids");
    let mut loaded = model::load(&model_path, &LoadOptions::default()).expect("model loads");
    if let Some(adapter) = args.next() {
        finetune::lora::load_adapters(&mut loaded.model, adapter.as_ref()).expect("adapters load");
    }
    let logits = loaded
        .model
        .forward(&Array::from_slice(&ids, &[1, ids.len() as i32]), None)
        .expect("forward");
    logits.eval().expect("eval");
    let shape = logits.shape().to_vec();
    let values = logits.as_slice::<f32>();
    println!(
        "{}",
        serde_json::json!({ "shape": shape, "values": values })
    );
}
