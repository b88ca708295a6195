"""Reads `make bench-preference`'s logs (ft train --json events of the DPO
and the SFT run) and prints the held-out preference figures per evaluation,
then trained tokens/s (from step 5 on, evaluation time excluded, as the
trainer reports it) and peak memory of both methods."""

import json
import math
import re
import sys

work = sys.argv[1]
WARMUP = 5


def events(name):
    return [json.loads(l) for l in open(f"{work}/{name}.log") if l.startswith("{")]


def rss_gib(name):
    text = open(f"{work}/{name}.time").read()
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 2**20


def speed(evs):
    """Trained tokens/s between step WARMUP and the last step: the trainer's
    tokens_per_second is cumulative over training time, so training time at
    a step is tokens / rate."""
    steps = [e for e in evs if e["event"] == "step"]
    a, b = steps[WARMUP - 1], steps[-1]
    t = lambda e: e["trained_tokens"] / e["tokens_per_second"]  # noqa: E731
    return (b["trained_tokens"] - a["trained_tokens"]) / (t(b) - t(a))


def finished(evs):
    done = [e for e in evs if e["event"] == "finished"]
    if not done:
        failed = [e.get("error") for e in evs if e["event"] == "failed"]
        raise SystemExit(f"the run did not finish: {failed}")
    return done[0]["summary"]


dpo, sft = events("dpo"), events("sft")
started = next(e for e in dpo if e["event"] == "started")
print(f"DPO: {started['train_examples']} training pairs, {started['valid_examples']} held-out pairs")
print()
print("| step | held-out DPO loss | held-out accuracy | mean margin |")
print("|---|---|---|---|")
print(f"| 0 | {math.log(2):.4f} (policy = reference) | — (every margin 0) | 0 |")
for e in (e for e in dpo if e["event"] == "eval"):
    p = e["preference"]
    print(f"| {e['step']} | {e['val_loss']:.4f} | {100 * p['accuracy']:.1f} % of {p['pairs']} | {p['margin']:.4f} |")
train_steps = [e for e in dpo if e["event"] == "step"]
print(
    f"\ntraining batches: loss {train_steps[0]['loss']:.4f} -> {train_steps[-1]['loss']:.4f}, "
    f"accuracy {100 * train_steps[-1]['preference']['accuracy']:.0f} % at the last step"
)
print()
print("| method | trained tokens/s | MLX peak (GiB) | peak RSS (GiB) |")
print("|---|---|---|---|")
rows = []
for name, log, evs in (("DPO (4 pairs/step)", "dpo", dpo), ("SFT (same 8 rows/step)", "sft", sft)):
    s = finished(evs)
    rows.append((name, speed(evs), s["peak_memory_bytes"] / 2**30, rss_gib(log)))
for name, tps, peak, rss in rows:
    print(f"| {name} | {tps:.1f} | {peak:.2f} | {rss:.2f} |")
print(f"\nDPO / SFT: {rows[0][1] / rows[1][1]:.2f}x the tokens/s, {rows[0][2] / rows[1][2]:.2f}x the MLX peak")
