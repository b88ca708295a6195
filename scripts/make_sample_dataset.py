"""Turn chitchat-dataset's dataset.json (read from stdin) into the sample chat
dataset: train.jsonl / valid.jsonl in OUT_DIR, one {"messages": [...]} per line.

Only two-person conversations are used; the first speaker is the user, the
other the assistant. Long conversations are cut into windows of a few
exchanges so each record fits a short context. Deterministic: same input,
same files. Run by scripts/setup.sh (setup time only; nothing at run time
needs Python).
"""

import hashlib
import json
import sys
from pathlib import Path

EXCHANGES_PER_RECORD = 3
MAX_TRAIN = 2000
MAX_VALID = 200


def turns_of(conversation):
    """[(sender, text)] with a speaker's consecutive messages joined."""
    turns = []
    for block in conversation["messages"]:
        texts = [m["text"].strip() for m in block if m.get("text", "").strip()]
        if not texts:
            continue
        sender = block[0]["sender"]
        if turns and turns[-1][0] == sender:
            turns[-1] = (sender, turns[-1][1] + "\n" + "\n".join(texts))
        else:
            turns.append((sender, "\n".join(texts)))
    return turns


def records_of(conversation):
    turns = turns_of(conversation)
    if len({sender for sender, _ in turns}) != 2:
        return
    pairs = [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns) - 1, 2)]
    for start in range(0, len(pairs), EXCHANGES_PER_RECORD):
        window = pairs[start : start + EXCHANGES_PER_RECORD]
        messages = []
        for user, assistant in window:
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": assistant})
        yield {"messages": messages}


def main():
    out_dir = Path(sys.argv[1])
    data = json.load(sys.stdin)
    train, valid = [], []
    for key in sorted(data):
        # A stable hash of the conversation id decides its split.
        bucket = hashlib.sha256(key.encode()).digest()[0]
        target = valid if bucket < 13 else train  # ~5% validation
        target.extend(records_of(data[key]))
    for name, records, limit in (("train", train, MAX_TRAIN), ("valid", valid, MAX_VALID)):
        path = out_dir / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for record in records[:limit]:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        print(f"  {path}: {min(len(records), limit)} records")


if __name__ == "__main__":
    main()
