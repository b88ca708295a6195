"""Reads scripts/cuda/bench.sh's logs and prints the GPU table: trained
tokens/s, peak GPU memory (the driver's reading above the idle level, and
each framework's own peak), achieved FLOP/s against the card's measured bf16
matmul peak, and the ratios; the card is named in every row.

python summarize.py WORK_DIR MODEL_CONFIG_JSON"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import logs  # noqa: E402

work, config = sys.argv[1], json.load(open(sys.argv[2]))
device = json.load(open(f"{work}/device.json"))
torch_mm = json.load(open(f"{work}/torch_matmul.json"))
card = (device.get("gpu") or {}).get("name") or torch_mm["card"]
mlx_peak = (device.get("matmul_bf16") or device["matmul"])["gflops"] / 1e3
peak_tflops = max(mlx_peak, torch_mm["tflops"])


def driver_peak(name):
    """Peak GPU memory the driver reported while NAME ran, above idle (GiB)."""
    try:
        idle = float(open(f"{work}/idle.gpumem").read().split()[0])
        used = [float(x) for x in open(f"{work}/{name}.gpumem").read().split() if x.strip()]
    except (FileNotFoundError, IndexError, ValueError):
        return None
    return (max(used) - idle) / 1024 if used else None


rows = []
for name, log, read in [
    ("FineTune (MLX CUDA)", "ft", logs.finetune),
    ("FineTune --no-compile", "ft_uncompiled", logs.finetune),
    ("FineTune --grad-checkpoint", "ft_checkpointed", logs.finetune),
    ("mlx_lm.lora 0.32.2 (mlx-cuda-13)", "mlx_lm", logs.mlx_lm),
    ("PyTorch + PEFT", "peft", logs.peft),
]:
    if os.path.exists(f"{work}/{log}.log"):  # bench.sh removes a failed tool's log
        tps, peak = read(f"{work}/{log}.log")
        rows.append((name, tps, peak, driver_peak(log)))
    else:
        print(f"{name}: failed, left out (see bench.sh's output)")

per_token = logs.flops_per_token(config, config["num_hidden_layers"])
gib = lambda b: "" if b is None else f"{b / 2**30:.2f}"
print(f"card: {card}; bf16 matmul peak measured now: MLX {mlx_peak:.0f} TFLOP/s, "
      f"PyTorch {torch_mm['tflops']:.0f} TFLOP/s ({torch_mm['size']}³); "
      f"{per_token / 1e9:.2f} GFLOP per trained token (lower bound)")
print()
print("| tool | card | trained tokens/s | GPU memory peak, driver (GiB) | framework peak (GiB) | TFLOP/s | % of bf16 peak |")
print("|---|---|---|---|---|---|---|")
for name, tps, peak, driver in rows:
    achieved = tps * per_token / 1e12
    d = "" if driver is None else f"{driver:.2f}"
    print(f"| {name} | {card} | {tps:,.0f} | {d} | {gib(peak)} | {achieved:.1f} | {100 * achieved / peak_tflops:.1f} % |")
print()
for ours, tps, _, _ in [r for r in rows if r[0].startswith("FineTune")]:
    for name, other, _, _ in [r for r in rows if not r[0].startswith("FineTune")]:
        print(f"{ours} on {card}: {tps / other:.2f}x {name} (trained tokens/s)")
