"""PyTorch + transformers + PEFT LoRA training, the side-by-side baseline of
`make bench`: the same model folder, chat data, LoRA settings, batch size
and maximum length as FineTune and mlx_lm.lora; every token of each
conversation (rendered with the model's chat template) trained. Prints one
JSON line per report.

python peft_lora.py MODEL_DIR TRAIN_JSONL ITERS REPORT_EVERY
"""

import json
import random
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, train_path, iters, report_every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
BATCH, MAX_LEN, RANK, LAYERS = 4, 512, 8, 16
torch.manual_seed(0)
random.seed(0)
torch.set_num_threads(torch.get_num_threads())

tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
n_layers = model.config.num_hidden_layers
model = get_peft_model(
    model,
    LoraConfig(
        r=RANK,
        lora_alpha=2 * RANK,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        layers_to_transform=list(range(n_layers - LAYERS, n_layers)),
    ),
)
examples = []
for line in open(train_path):
    messages = json.loads(line)["messages"]
    encoded = tok.apply_chat_template(messages, tokenize=True)
    # transformers 5 returns a BatchEncoding; older versions a list of ids.
    full = list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)[:MAX_LEN]
    examples.append((full, list(full)))
# Length-sorted batches, visited in a shuffled order (as mlx_lm does).
order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
batches = [order[i : i + BATCH] for i in range(0, len(order) - BATCH + 1, BATCH)]
random.shuffle(batches)
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
pad = tok.pad_token_id if tok.pad_token_id is not None else 0
model.train()
tokens, start = 0, time.perf_counter()
for step in range(iters):
    rows = [examples[i] for i in batches[step % len(batches)]]
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [pad] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    attention = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
    loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    tokens += int((labels[:, 1:] != -100).sum())
    if (step + 1) % report_every == 0:
        now = time.perf_counter()
        print(json.dumps({"step": step + 1, "loss": float(loss), "trained_tokens": tokens, "seconds": now - start}), flush=True)
