"""Checks that adapters trained by FineTune load in mlx-lm unchanged and give
the same logits as FineTune's engine.

python check_mlx_lm.py MODEL_DIR ADAPTER_DIR ENGINE_LOGITS.json IDS.json
(run by scripts/interop/run.sh, which prepares everything)
"""

import json
import sys

import mlx.core as mx
import numpy as np
from mlx_lm.utils import load

model_dir, adapter_dir, engine_path, ids_path = sys.argv[1:5]
ids = json.load(open(ids_path))
engine = json.load(open(engine_path))
expected = np.array(engine["values"], dtype=np.float32).reshape(engine["shape"])

model, _tokenizer = load(model_dir, adapter_path=adapter_dir)
logits = np.array(model(mx.array([ids])).astype(mx.float32))
diff = float(np.abs(logits - expected).max())
print(f"mlx-lm {logits.shape} vs FineTune {expected.shape}: max |diff| = {diff:.3e}")
assert logits.shape == expected.shape, "shapes differ"
tolerance = max(1e-4, 1e-5 * float(np.abs(expected).max()))
assert diff <= tolerance, f"logits differ by {diff} (tolerance {tolerance:.1e})"
print("mlx-lm loads FineTune's adapters and agrees: ok")
