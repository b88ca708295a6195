"""Reads the tools' logs from `make bench` and prints one table: trained
tokens per second after the warm-up reports, and peak memory; then
FineTune's achieved FLOP/s against the measured matmul peak."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import logs  # noqa: E402

work = sys.argv[1]
config = json.load(open(sys.argv[2]))
LORA_LAYERS = 16


def rss(name):
    text = open(f"{work}/{name}.time").read()
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 2**20


rows = []
for name, log in [("FineTune (ft train start)", "ft"), ("FineTune --packing", "ft_packed")]:
    tps, peak = logs.finetune(f"{work}/{log}.log")
    rows.append((name, tps, peak / 2**30, rss(log)))
tps, peak = logs.mlx_lm(f"{work}/mlx_lm.log")
rows.append(("mlx_lm.lora 0.32.2", tps, peak / 2**30 if peak else None, rss("mlx_lm")))
tps, _ = logs.peft(f"{work}/peft.log")
rows.append(("PyTorch + PEFT", tps, None, rss("peft")))

print(f"| tool | trained tokens/s | framework peak (GiB) | peak RSS (GiB) |")
print("|---|---|---|---|")
for name, tps, peak, r in rows:
    print(f"| {name} | {tps:.1f} | {'' if peak is None else f'{peak:.2f}'} | {r:.2f} |")
mlx_tps, pt_tps = rows[2][1], rows[3][1]
print()
for name, tps, _, _ in rows[:2]:
    print(f"{name}: {tps / mlx_tps:.2f}x mlx_lm, {tps / pt_tps:.2f}x PyTorch+PEFT")

flops_per_token = logs.flops_per_token(config, LORA_LAYERS)
peak = json.load(open(f"{work}/device.json"))["matmul"]["gflops"]
print(f"\nmatmul peak (ft device, f32 1024²): {peak:.1f} GFLOP/s; {flops_per_token / 1e6:.1f} MFLOP per trained token")
for name, tps, _, _ in rows:
    achieved = tps * flops_per_token / 1e9
    print(f"{name}: {achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f} % of the matmul peak")
