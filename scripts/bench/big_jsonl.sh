#!/usr/bin/env bash
# Bounded memory on big data (issue 18): generates deterministic chat JSONL
# files of 200 MB and 2 GB (varied lengths) in $FINETUNE_CACHE/data/, then
# runs `ft data inspect` and `ft train start --iters 5` on each under
# /usr/bin/time -v and prints peak RSS and wall time per run, so the
# figures show whether resident memory grows with the file. With
# FORMAT=json the same records are written as one `.json` list, and
# `ft data split` is measured as well.
#
#   bash scripts/bench/big_jsonl.sh            # both sizes
#   SIZES="200" bash scripts/bench/big_jsonl.sh  # MB, space-separated
#   FORMAT=json SIZES="20 200" bash scripts/bench/big_jsonl.sh
#
# Needs GNU time (/usr/bin/time; `apt-get install time`) and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE="${FINETUNE_CACHE:-.cache}"
DATA="$CACHE/data"
SIZES="${SIZES:-200 2000}"
MODEL="${MODEL:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
MAX_LENGTH="${MAX_LENGTH:-512}"
FT="${FT:-target/debug/ft}"
FORMAT="${FORMAT:-jsonl}"

if [[ ! -x /usr/bin/time ]] || ! /usr/bin/time -v true >/dev/null 2>&1; then
    echo "big_jsonl: GNU time is missing: install it with \`sudo apt-get install time\` (or brew install gnu-time)" >&2
    exit 1
fi
if [[ ! -f "$MODEL" ]]; then
    echo "big_jsonl: no model at $MODEL (run make setup, or set MODEL=)" >&2
    exit 1
fi
cargo build -q -p finetune --bin ft
mkdir -p "$DATA"

generate() { # size in MB → path
    local mb=$1 path="$DATA/big-${1}mb.jsonl"
    if [[ ! -f "$path" ]] || (( $(stat -c %s "$path") < mb * 1000000 )); then
        python3 - "$path" "$mb" <<'EOF'
import json, random, sys
path, mb = sys.argv[1], int(sys.argv[2])
target = mb * 1_000_000
rng = random.Random(18)
words = ("the a model data train token memory file stream batch layer weight "
         "gradient loss learn read write index cache shard line record chat "
         "assistant user system reply question answer river mountain city "
         "window lamp paper garden music number seven eleven blue quiet").split()
def text(lo, hi):
    n = int(rng.lognormvariate(0, 1) * (hi - lo) / 4 + lo)
    n = max(lo, min(hi, n))
    return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."
written = 0
with open(path + ".tmp", "w") as out:
    while written < target:
        messages = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": text(4, 30)})
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            messages.append({"role": "user", "content": text(5, 120)})
            messages.append({"role": "assistant", "content": text(10, 600)})
        line = json.dumps({"messages": messages}) + "\n"
        out.write(line)
        written += len(line)
import os
os.replace(path + ".tmp", path)
EOF
    fi
    echo "$path"
}

measure() { # label, command... → "label  rss_mib  seconds"
    local label=$1 log
    shift
    log=$(mktemp)
    if ! /usr/bin/time -v "$@" >"$log.out" 2>"$log"; then
        echo "big_jsonl: $label failed:" >&2
        tail -20 "$log" "$log.out" >&2
        exit 1
    fi
    local rss wall
    rss=$(awk -F: '/Maximum resident set size/ {print $2}' "$log")
    wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$log")
    printf '%-30s peak RSS %7.1f MiB   wall %s\n' "$label" "$(awk -v r="$rss" 'BEGIN {print r / 1024}')" "$wall"
    rm -f "$log" "$log.out"
}

as_json_list() { # a .jsonl path → the same records as a .json list beside it
    local jsonl=$1 json="${1%.jsonl}.json"
    if [[ ! -f "$json" || "$json" -ot "$jsonl" ]]; then
        python3 - "$jsonl" "$json" <<'EOF'
import os, sys
src, dst = sys.argv[1], sys.argv[2]
with open(src) as lines, open(dst + ".tmp", "w") as out:
    out.write("[\n")
    for i, line in enumerate(lines):
        out.write((",\n" if i else "") + line.rstrip("\n"))
    out.write("\n]\n")
os.replace(dst + ".tmp", dst)
EOF
    fi
    echo "$json"
}

RUNS=$(mktemp -d)
trap 'rm -rf "$RUNS"' EXIT
for mb in $SIZES; do
    path=$(generate "$mb")
    if [[ "$FORMAT" == json ]]; then
        path=$(as_json_list "$path")
        echo "== $path ($(du -h "$path" | cut -f1))"
        measure "data split ${mb} MB" "$FT" data split "$path" --output "$RUNS/split-$mb"
        rm -rf "$RUNS/split-$mb"
    else
        echo "== $path ($(du -h "$path" | cut -f1))"
    fi
    measure "inspect ${mb} MB" "$FT" data inspect "$path" --model "$MODEL" --max-length "$MAX_LENGTH" --json
    measure "train --iters 5 ${mb} MB" "$FT" train start "$MODEL" "$path" --iters 5 \
        --batch-size 2 --max-length "$MAX_LENGTH" --runs-dir "$RUNS" --json
    measure "train again (cached) ${mb} MB" "$FT" train start "$MODEL" "$path" --iters 5 \
        --batch-size 2 --max-length "$MAX_LENGTH" --runs-dir "$RUNS" --json
done
