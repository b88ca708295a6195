"""Reads `make bench-grpo`'s logs (ft train --json events of the base
evaluation and the GRPO run) and prints the held-out reward per
evaluation, the training reward at the start and the end of the run, the
speed (sampled tokens/s while sampling, trained tokens/s overall, the share
of time spent sampling) and peak memory."""

import json
import re
import sys

work = sys.argv[1]


def events(name):
    return [json.loads(l) for l in open(f"{work}/{name}.log") if l.startswith("{")]


def finished(evs):
    done = [e for e in evs if e["event"] == "finished"]
    if not done:
        failed = [e.get("error") for e in evs if e["event"] == "failed"]
        raise SystemExit(f"the run did not finish: {failed}")
    return done[0]["summary"]


base, grpo = events("base"), events("grpo")
finished(base)
summary = finished(grpo)
started = next(e for e in grpo if e["event"] == "started")
print(f"GRPO: {started['train_examples']} training prompts, {started['valid_examples']} held-out prompts")
print()
print("| step | held-out reward (exact match, greedy) | mean answer tokens |")
print("|---|---|---|")
b = next(e for e in base if e["event"] == "eval")["grpo"]
print(f"| 0 (base) | {b['reward_mean']:.3f} of {b['completions']} | {b['completion_length']:.1f} |")
for e in (e for e in grpo if e["event"] == "eval"):
    g = e["grpo"]
    print(f"| {e['step']} | {g['reward_mean']:.3f} of {g['completions']} | {g['completion_length']:.1f} |")

steps = [e for e in grpo if e["event"] == "step"]
tenth = max(1, len(steps) // 5)


def mean(xs):
    return sum(xs) / len(xs)


first, last = steps[:tenth], steps[-tenth:]
print(
    f"\nsampled answers' mean reward: {mean([e['grpo']['reward_mean'] for e in first]):.3f} "
    f"(steps 1–{tenth}) -> {mean([e['grpo']['reward_mean'] for e in last]):.3f} "
    f"(steps {len(steps) - tenth + 1}–{len(steps)}); KL at the end {last[-1]['grpo']['kl']:.4f}"
)
sampled = sum(e["grpo"]["completions"] * e["grpo"]["completion_length"] for e in steps)
sampling = sum(e["grpo"]["generation_seconds"] for e in steps)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{work}/grpo.time").read()).group(1)) / 2**20
print()
print("| sampled tokens/s (while sampling) | trained tokens/s (whole step) | time sampling | MLX peak (GiB) | peak RSS (GiB) |")
print("|---|---|---|---|---|")
print(
    f"| {sampled / sampling:.1f} | {summary['tokens_per_second']:.1f} | "
    f"{100 * sampling / summary['seconds']:.0f} % of {summary['seconds']:.0f} s | "
    f"{summary['peak_memory_bytes'] / 2**30:.2f} | {rss:.2f} |"
)
