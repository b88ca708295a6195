"""PyTorch + transformers + PEFT LoRA training, the side-by-side baseline of
`make bench` (CPU, float32) and scripts/cuda/bench.sh (GPU, bfloat16): the
same model folder, data, LoRA settings, batch size and maximum length as
FineTune and mlx_lm.lora; every token trained. Chat records are rendered
with the model's chat template; text records are the text plus EOS (as
mlx_lm does). Prints one JSON line per report, and at the end the peak
memory PyTorch allocated on the GPU.

python peft_lora.py MODEL_DIR TRAIN_JSONL ITERS REPORT_EVERY
    [--device cpu|cuda] [--dtype float32|bfloat16] [--rank 8] [--layers 16]
    [--max-length 512] [--batch-size 4]
"""

import argparse
import json
import random
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

parser = argparse.ArgumentParser()
parser.add_argument("model_dir")
parser.add_argument("train_path")
parser.add_argument("iters", type=int)
parser.add_argument("report_every", type=int)
parser.add_argument("--device", default="cpu")
parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
parser.add_argument("--rank", type=int, default=8)
parser.add_argument("--layers", type=int, default=16, help="LoRA on the last N layers (0: all)")
parser.add_argument("--max-length", type=int, default=512)
parser.add_argument("--batch-size", type=int, default=4)
args = parser.parse_args()
torch.manual_seed(0)
random.seed(0)

tok = AutoTokenizer.from_pretrained(args.model_dir)
model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, args.dtype))
model.to(args.device)
n_layers = model.config.num_hidden_layers
layers = n_layers if args.layers <= 0 else min(args.layers, n_layers)
model = get_peft_model(
    model,
    LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        layers_to_transform=list(range(n_layers - layers, n_layers)),
    ),
)


def encode(record):
    if "messages" in record:
        encoded = tok.apply_chat_template(record["messages"], tokenize=True)
        # transformers 5 returns a BatchEncoding; older versions a list of ids.
        return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
    ids = tok(record["text"])["input_ids"]
    return ids if ids and ids[-1] == tok.eos_token_id else ids + [tok.eos_token_id]


examples = []
for line in open(args.train_path):
    full = encode(json.loads(line))[: args.max_length]
    examples.append((full, list(full)))
# Length-sorted batches, visited in a shuffled order (as mlx_lm does).
BATCH = args.batch_size
order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
batches = [order[i : i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
random.shuffle(batches)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
pad = tok.pad_token_id if tok.pad_token_id is not None else 0
on_gpu = args.device.startswith("cuda")
model.train()
tokens, start = 0, time.perf_counter()
for step in range(args.iters):
    rows = [examples[i] for i in batches[step % len(batches)]]
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [pad] * (width - len(r[0])) for r in rows], device=args.device)
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows], device=args.device)
    attention = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows], device=args.device)
    loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    tokens += int((labels[:, 1:] != -100).sum())
    if (step + 1) % args.report_every == 0:
        value = float(loss)  # waits for the GPU: the time below is real
        now = time.perf_counter()
        print(json.dumps({"step": step + 1, "loss": value, "trained_tokens": tokens, "seconds": now - start}), flush=True)
if on_gpu:
    print(json.dumps({"peak_allocated_bytes": torch.cuda.max_memory_allocated()}), flush=True)
