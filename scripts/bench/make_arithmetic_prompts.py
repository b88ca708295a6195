"""Writes GRPO prompts with reference answers for `make bench-grpo`:
additions of a number up to 30 and a digit ("What is 17 + 5?"), each with
its sum as `answer`, in train.jsonl and valid.jsonl of OUT; the held-out
questions never appear in training. Small sums because the default model
(135M parameters) gets about one in four right when sampling: enough right
answers in a group of eight to learn from. Seeded, so every run sees the
same prompts."""

import json
import random
import sys

out, n_train, n_valid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
questions = [(a, b) for a in range(1, 31) for b in range(1, 10)]
random.Random(20261204).shuffle(questions)
if n_train + n_valid > len(questions):
    raise SystemExit(f"at most {len(questions)} distinct questions")
splits = (("train", questions[:n_train]), ("valid", questions[n_train : n_train + n_valid]))
for name, part in splits:
    with open(f"{out}/{name}.jsonl", "w", encoding="utf-8") as f:
        for a, b in part:
            record = {"question": f"What is {a} + {b}? Reply with the number only.", "answer": str(a + b)}
            f.write(json.dumps(record) + "\n")
