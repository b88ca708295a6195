"""Reads the tools' logs from `make bench` and prints one table: trained
tokens per second after the warm-up reports, and peak memory; then
FineTune's achieved FLOP/s against the measured matmul peak."""

import json
import re
import sys

work = sys.argv[1]
config = json.load(open(sys.argv[2]))
LORA_LAYERS = 16


def rss(name):
    text = open(f"{work}/{name}.time").read()
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 2**20


def speed(points):
    """Tokens/s between the first report (warm-up excluded) and the last."""
    (t0, s0), (t1, s1) = points[0], points[-1]
    return (t1 - t0) / (s1 - s0)


rows = []
# FineTune: step events with cumulative trained tokens and elapsed seconds.
for name, log in [("FineTune (ft train start)", "ft"), ("FineTune --packing", "ft_packed")]:
    ft = [json.loads(l) for l in open(f"{work}/{log}.log") if l.startswith("{")]
    steps = [(e["trained_tokens"], e["elapsed_seconds"]) for e in ft if e["event"] == "step"]
    peak = [e for e in ft if e["event"] == "finished"][0]["summary"]["peak_memory_bytes"] / 2**30
    rows.append((name, speed(steps), peak, rss(log)))
# mlx_lm 0.32 prints a table: "iter  train_loss  tok/s  tokens" per report.
text = re.sub(r"\x1b\[[0-9;]*m", "", open(f"{work}/mlx_lm.log").read())
reports = re.findall(r"^\s*(\d+)\s+([\d.]+)\s*[▼▲=]?\s+([\d.]+)\s+([\d.]+k?)\s*$", text, re.M)
tps = [float(r[2]) for r in reports[1:]] or [float(r[2]) for r in reports]
peak = re.findall(r"[Pp]eak mem(?:ory)?[: ]+([\d.]+) ?GB", text)
rows.append(("mlx_lm.lora 0.32.2", sum(tps) / len(tps), float(peak[-1]) * 1e9 / 2**30 if peak else None, rss("mlx_lm")))
# PyTorch + PEFT: JSON reports with cumulative tokens and seconds.
pt = [json.loads(l) for l in open(f"{work}/peft.log") if l.startswith("{")]
rows.append(("PyTorch + PEFT", speed([(p["trained_tokens"], p["seconds"]) for p in pt]), None, rss("peft")))

print(f"| tool | trained tokens/s | framework peak (GiB) | peak RSS (GiB) |")
print("|---|---|---|---|")
for name, tps, peak, r in rows:
    print(f"| {name} | {tps:.1f} | {'' if peak is None else f'{peak:.2f}'} | {r:.2f} |")
mlx_tps, pt_tps = rows[2][1], rows[3][1]
print()
for name, tps, _, _ in rows[:2]:
    print(f"{name}: {tps / mlx_tps:.2f}x mlx_lm, {tps / pt_tps:.2f}x PyTorch+PEFT")

# Useful matrix-product FLOPs per trained token: the projections of every
# layer forward, their input gradients in the trained (last 16) layers, and
# the head forward and backward. Attention scores, padding and the
# cross-entropy's recomputed logits are not counted: a lower bound.
h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
heads, kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
kv_dim = h // heads * kv
per_layer = h * h * 2 + h * kv_dim * 2 + 3 * h * i
layers = config["num_hidden_layers"]
flops_per_token = 2 * per_layer * layers + 2 * per_layer * min(LORA_LAYERS, layers) + 4 * h * v
peak = json.load(open(f"{work}/device.json"))["matmul"]["gflops"]
print(f"\nmatmul peak (ft device, f32 1024²): {peak:.1f} GFLOP/s; {flops_per_token / 1e6:.1f} MFLOP per trained token")
for name, tps, _, _ in rows:
    achieved = tps * flops_per_token / 1e9
    print(f"{name}: {achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f} % of the matmul peak")
