"""Reads the three tools' logs from `make bench` and prints one table:
trained tokens per second after the warm-up reports, and peak memory."""

import json
import re
import sys

work = sys.argv[1]


def rss(name):
    text = open(f"{work}/{name}.time").read()
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 2**20


def speed(points):
    """Tokens/s between the first report (warm-up excluded) and the last."""
    (t0, s0), (t1, s1) = points[0], points[-1]
    return (t1 - t0) / (s1 - s0)


rows = []
# FineTune: step events with cumulative trained tokens and elapsed seconds.
ft = [json.loads(l) for l in open(f"{work}/ft.log") if l.startswith("{")]
steps = [(e["trained_tokens"], e["elapsed_seconds"]) for e in ft if e["event"] == "step"]
peak = [e for e in ft if e["event"] == "finished"][0]["summary"]["peak_memory_bytes"] / 2**30
rows.append(("FineTune (ft train start)", speed(steps), peak, rss("ft")))
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
ft_tps, mlx_tps, pt_tps = rows[0][1], rows[1][1], rows[2][1]
print(f"\nFineTune / mlx_lm = {ft_tps / mlx_tps:.2f}x, FineTune / PyTorch+PEFT = {ft_tps / pt_tps:.2f}x")
