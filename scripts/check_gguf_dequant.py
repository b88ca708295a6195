#!/usr/bin/env python3
"""Compare FineTune's GGUF dequantization with gguf-py's over ALL tensors of a file.

FineTune's side is the ignored test `dump_dequant_sha256` of tests/gguf_quants.rs,
which writes `name type sha256` of each tensor's float32 values (little-endian,
row-major); gguf-py's side is `gguf.quants.dequantize` of the same tensor, hashed
the same way. Every tensor must match bit for bit.

    python3 -m venv .cache/venv-gguf
    .cache/venv-gguf/bin/pip install gguf numpy safetensors
    .cache/venv-gguf/bin/python scripts/check_gguf_dequant.py .cache/models/gemma-3-270m-q4_k_m.gguf

Options:
    --ours HASHES   use a hash list written earlier instead of running cargo
    --debug         build the test without --release

Exit status 0 when every tensor matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import gguf
from gguf.quants import dequantize

ROOT = Path(__file__).resolve().parents[1]


def ours(path: Path, release: bool) -> tuple[dict[str, tuple[str, str]], str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ours.txt"
        cmd = ["cargo", "test", "-p", "finetune", "--test", "gguf_quants"]
        if release:
            cmd.append("--release")
        cmd += ["--", "--ignored", "--exact", "dump_dequant_sha256", "--nocapture"]
        env = dict(os.environ, GGUF_CHECK_FILE=str(path.resolve()), GGUF_CHECK_OUT=str(out))
        print("running:", " ".join(cmd), flush=True)
        run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stdout[-4000:] + run.stderr[-4000:])
            sys.exit(f"cargo test failed ({run.returncode})")
        timing = next((l for l in run.stdout.splitlines() if l.startswith("open:")), "")
        return read_hashes(out), timing


def read_hashes(path: Path) -> dict[str, tuple[str, str]]:
    result = {}
    for line in path.read_text().splitlines():
        name, ty, digest = line.rsplit(" ", 2)
        result[name] = (ty, digest)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument("--ours", type=Path)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()

    if args.ours:
        mine, timing = read_hashes(args.ours), ""
    else:
        mine, timing = ours(args.file, release=not args.debug)

    start = time.monotonic()
    reader = gguf.GGUFReader(args.file)
    same: collections.Counter[str] = collections.Counter()
    differ: collections.Counter[str] = collections.Counter()
    values = 0
    bad = []
    for t in reader.tensors:
        out = np.ascontiguousarray(dequantize(np.asarray(t.data), t.tensor_type), dtype="<f4")
        values += out.size
        digest = hashlib.sha256(out.tobytes()).hexdigest()
        ty = t.tensor_type.name
        got = mine.get(t.name)
        if got is not None and got == (ty, digest):
            same[ty] += 1
        else:
            differ[ty] += 1
            bad.append(t.name)
    missing = set(mine) - {t.name for t in reader.tensors}
    print(f"gguf-py dequantized {len(reader.tensors)} tensors ({values} values) in {time.monotonic() - start:.1f} s")
    if timing:
        print(f"FineTune: {timing}")
    for ty in sorted(set(same) | set(differ)):
        print(f"  {ty:7} {same[ty]:4} bit-equal, {differ[ty]} different")
    if bad or missing:
        print(f"MISMATCH: {len(bad)} tensors differ or are missing from ours, first: {bad[:5]}; "
              f"{len(missing)} extra in ours")
        sys.exit(1)
    print(f"all {sum(same.values())} tensors of {args.file.name} bit-equal to gguf-py")


if __name__ == "__main__":
    main()
