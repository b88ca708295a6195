"""Makes the GPU benchmark's model and data (on the GPU machine, which has
torch, transformers and tokenizers but reaches no registry).

- a Llama model with random weights (transformers' own initialisation,
  seed 0) in bfloat16: the Llama-3.2-1B shape by default (16 layers, hidden
  2048, MLP 8192, 32 query / 8 key-value heads, vocabulary 128,256, tied
  embeddings, llama3 RoPE scaling), or `--shape tiny` for a quick check;
- a word-level tokenizer with the model's vocabulary ("w3" … "w128255"), so
  every word is one token and each tool sees exactly the same token ids;
- train.jsonl / valid.jsonl of {"text": ...} records of random words, each
  `--length - 1` words (the tools append EOS: rows of exactly --length).

python make_bench_model.py OUT_DIR [--shape llama-3.2-1b|tiny] [--length 1024]
"""

import argparse
import json
import os
import random

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SHAPES = {
    "llama-3.2-1b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=131072,
        rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192),
    ),
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, vocab_size=1000, max_position_embeddings=2048,
        rope_theta=10000.0,
    ),
}

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--shape", default="llama-3.2-1b", choices=sorted(SHAPES))
parser.add_argument("--length", type=int, default=1024)
parser.add_argument("--train-examples", type=int, default=512)
args = parser.parse_args()
torch.manual_seed(0)
rng = random.Random(0)
shape = SHAPES[args.shape]
model_dir, data_dir = os.path.join(args.out, "model"), os.path.join(args.out, "data")
os.makedirs(data_dir, exist_ok=True)

config = LlamaConfig(
    **shape, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, rms_norm_eps=1e-5,
    hidden_act="silu", attention_bias=False, mlp_bias=False,
)
device = "cuda" if torch.cuda.is_available() else "cpu"
with torch.device(device):
    model = LlamaForCausalLM(config).to(torch.bfloat16)
model.save_pretrained(model_dir)
print(f"model: {sum(p.numel() for p in model.parameters()) / 1e9:.3f} B parameters -> {model_dir}")

vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
vocab.update({f"w{i}": i for i in range(3, shape["vocab_size"])})
core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>",
    model_max_length=shape["max_position_embeddings"],
)
tokenizer.save_pretrained(model_dir)

for name, count in [("train", args.train_examples), ("valid", 8)]:
    with open(os.path.join(data_dir, f"{name}.jsonl"), "w") as f:
        for _ in range(count):
            words = " ".join(f"w{rng.randrange(3, shape['vocab_size'])}" for _ in range(args.length - 1))
            f.write(json.dumps({"text": words}) + "\n")
print(f"data: {args.train_examples} train / 8 valid records of {args.length} tokens -> {data_dir}")
