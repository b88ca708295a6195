"""Derive a small preference dataset from chitchat-dataset's dataset.json
(read from stdin): train.jsonl / valid.jsonl in OUT_DIR, one pair per line in
TRL's conversational shape ({"prompt": [...], "chosen": [...],
"rejected": [...]}).

How the pairs are made, and what they are worth:
- Each chitchat conversation began with one of 35 written prompts ("What
  superpower do you wish you had, and why?"); its first message is one
  person's answer to that prompt. A pair is two such first answers to the
  same prompt.
- The people who held the conversation rated it afterwards (witty, upbeat,
  interesting; 1-10 each). The answer whose conversation scored higher in
  total is "chosen". Ratings are of the whole conversation, not the answer
  alone, and the raters are the speakers themselves: this is a noisy,
  real human signal, not a curated preference set.
- Two equal answers (many openings are just "Hi") make no pair.
- Conversations rated 5/5/5 are left out (the rating form's default, 42% of
  them), and so is any pair whose totals differ by less than MIN_GAP.
- Held-out pairs use prompts never seen in training (a stable hash of the
  prompt text picks them), so validation accuracy measures what carries
  over to new questions.

Deterministic: same input, same files. Run by scripts/setup.sh.
"""

import hashlib
import json
import random
import sys
from pathlib import Path

MIN_GAP = 6
MAX_TRAIN = 1200
MAX_VALID = 200
MAX_CHARS = 600  # answers longer than this are skipped (short context)


def first_answer(conversation):
    """The first speaker's opening turn (consecutive messages joined)."""
    blocks = conversation.get("messages") or []
    if not blocks or not blocks[0]:
        return None
    sender = blocks[0][0].get("sender")
    texts = []
    for block in blocks:
        if not block or block[0].get("sender") != sender:
            break
        texts.extend(m["text"].strip() for m in block if m.get("text", "").strip())
    answer = "\n".join(texts).strip()
    return answer if 0 < len(answer) <= MAX_CHARS else None


def rated_answers(data):
    """{prompt: [(total rating, conversation id, answer)]}, defaults dropped."""
    by_prompt = {}
    for key in sorted(data):
        c = data[key]
        ratings = c.get("ratings") or {}
        if "prompt" not in c or len(ratings) != 3:
            continue
        if all(v == 5 for v in ratings.values()):
            continue
        answer = first_answer(c)
        if answer is None:
            continue
        by_prompt.setdefault(c["prompt"], []).append((sum(ratings.values()), key, answer))
    return by_prompt


def pairs_for(prompt, answers, rng):
    """Pairs (each answer used at most once) with a rating gap of MIN_GAP."""
    rng.shuffle(answers)
    high = sorted(answers, key=lambda a: -a[0])
    used, pairs = set(), []
    for i, (score, key, answer) in enumerate(high):
        if key in used:
            continue
        for low_score, low_key, low_answer in reversed(high[i + 1 :]):
            if low_key in used or score - low_score < MIN_GAP:
                continue
            # Many openings are the same greeting ("Hi"): no preference there.
            if " ".join(low_answer.lower().split()) == " ".join(answer.lower().split()):
                continue
            used.update((key, low_key))
            pairs.append(
                {
                    "prompt": [{"role": "user", "content": prompt}],
                    "chosen": [{"role": "assistant", "content": answer}],
                    "rejected": [{"role": "assistant", "content": low_answer}],
                }
            )
            break
    return pairs


def main():
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)
    train, valid = [], []
    for prompt, answers in sorted(rated_answers(json.load(sys.stdin)).items()):
        held_out = hashlib.sha256(prompt.encode()).digest()[0] < 40  # ~5 of 35 prompts
        (valid if held_out else train).extend(pairs_for(prompt, answers, rng))
    rng.shuffle(train)
    rng.shuffle(valid)
    for name, records, limit in (("train", train, MAX_TRAIN), ("valid", valid, MAX_VALID)):
        path = out_dir / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for record in records[:limit]:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"  {path}: {min(len(records), limit)} pairs")


if __name__ == "__main__":
    main()
