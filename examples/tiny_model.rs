//! Writes a tiny random Llama (Hugging Face folder) and a small chat dataset,
//! for interoperability checks and demos.
//!
//! cargo run --example tiny_model -- OUT_DIR

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: tiny_model OUT_DIR"));
    std::fs::create_dir_all(&out).expect("writable output folder");
    let model = finetune::fixtures::TinyModel::default().write(&out);
    let data = finetune::fixtures::write_chat_data(&out, 16);
    println!("{}\n{}", model.display(), data.display());
}
