"""Checks that adapters FineTune exported in PEFT's format load in Hugging
Face PEFT (on transformers' own model of the same base) and give the same
logits as FineTune's engine.

python check_peft.py MODEL PEFT_DIR ENGINE_LOGITS.json IDS.json
MODEL is a Hugging Face folder or a .gguf file (transformers dequantizes it).
(run by scripts/interop/peft.sh, which prepares everything)
"""

import json
import sys

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

model_dir, peft_dir, engine_path, ids_path = sys.argv[1:5]
ids = json.load(open(ids_path))
engine = json.load(open(engine_path))
expected = np.array(engine["values"], dtype=np.float32).reshape(engine["shape"])

if model_dir.endswith(".gguf"):
    import os

    folder, name = os.path.split(os.path.abspath(model_dir))
    base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
else:
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
model = PeftModel.from_pretrained(base, peft_dir).eval()
config = json.load(open(f"{peft_dir}/adapter_config.json"))
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits.numpy()
diff = float(np.abs(logits - expected).max())
kind = "DoRA" if config.get("use_dora") else "LoRA"
print(
    f"PEFT {kind} {logits.shape} vs FineTune {expected.shape}: max |diff| = {diff:.3e}"
    f" (max |logit| {np.abs(expected).max():.1f})"
)
assert logits.shape == expected.shape, "shapes differ"
# float32 sums in another order: allow 1e-5 of the logits' scale (at least 1e-4).
tolerance = max(1e-4, 1e-5 * float(np.abs(expected).max()))
assert diff <= tolerance, f"logits differ by {diff} (tolerance {tolerance:.1e})"
print(f"PEFT loads FineTune's {kind} adapters and agrees: ok")
