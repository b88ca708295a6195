"""Reads the logs the benchmark scripts collect (FineTune's JSON events,
mlx_lm.lora's report lines, peft_lora.py's JSON lines) and counts the useful
matrix-product FLOPs per trained token. Shared by scripts/bench/summarize.py
(CPU) and scripts/cuda/summarize.py (GPU)."""

import json
import re


def speed(points):
    """Tokens/s between the first report (warm-up excluded) and the last."""
    (t0, s0), (t1, s1) = points[0], points[-1]
    return (t1 - t0) / (s1 - s0)


def finetune(path):
    """(trained tokens/s, MLX peak memory in bytes) of an `ft train --json` log."""
    events = [json.loads(l) for l in open(path) if l.startswith("{")]
    steps = [(e["trained_tokens"], e["elapsed_seconds"]) for e in events if e["event"] == "step"]
    peak = [e for e in events if e["event"] == "finished"][0]["summary"]["peak_memory_bytes"]
    return speed(steps), peak


def mlx_lm(path):
    """(trained tokens/s, MLX peak memory in bytes or None) of mlx_lm.lora's output.

    mlx_lm 0.32 prints a table, "iter  train_loss  tok/s  tokens", per report;
    the first report (compilation, warm-up) is left out."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", open(path).read())
    # tok/s is printed with thousands separators ("27,727") once it is large.
    reports = re.findall(r"^\s*(\d+)\s+([\d.]+)\s*[▼▲=]?\s+([\d,.]+)\s+([\d.]+k?)\s*$", text, re.M)
    tps = [float(r[2].replace(",", "")) for r in reports]
    tps = tps[1:] or tps
    if not tps:
        raise SystemExit(f"{path}: no mlx_lm training reports found (did it fail? see the log)")
    peak = re.findall(r"[Pp]eak mem(?:ory)?[: ]+([\d.]+) ?GB", text)
    return sum(tps) / len(tps), float(peak[-1]) * 1e9 if peak else None


def peft(path):
    """(trained tokens/s, PyTorch's peak GPU allocation in bytes or None)."""
    lines = [json.loads(l) for l in open(path) if l.startswith("{")]
    reports = [(p["trained_tokens"], p["seconds"]) for p in lines if "step" in p]
    peak = [p["peak_allocated_bytes"] for p in lines if "peak_allocated_bytes" in p]
    return speed(reports), peak[0] if peak else None


def flops_per_token(config, lora_layers):
    """Useful matrix-product FLOPs per trained token: every layer's projections
    forward, their input gradients from the first trained layer on, and the
    head forward and backward. Attention scores, padding and recomputed logits
    are not counted: a lower bound."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or h // heads
    q_dim, kv_dim = heads * head_dim, kv * head_dim
    per_layer = 2 * h * q_dim + 2 * h * kv_dim + 3 * h * i
    layers = config["num_hidden_layers"]
    return 2 * per_layer * layers + 2 * per_layer * min(lora_layers, layers) + 4 * h * v
