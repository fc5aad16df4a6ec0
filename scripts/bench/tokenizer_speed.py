#!/usr/bin/env python3
"""Encoding speed of a tokenizer.json, side by side: polar (`polar tokenizer bench`, each line
encoded as the data builders do) against the `tokenizers` library's encode_batch (what
transformers' fast tokenizers, vLLM and SGLang run), with the same thread count
(RAYON_NUM_THREADS for the library). Prints both numbers as tokens/s per thread.

    .venv/bin/python scripts/bench/tokenizer_speed.py --mb 100 --threads 1
    .venv/bin/python scripts/bench/tokenizer_speed.py --tokenizer DIR --mb 20 --threads 2

Without --tokenizer it uses SmolLM2's tokenizer.json (scripts/examples/smollm2_to_hf.py). The
text is generated (seeded): English-like words, numbers, code-like punctuation, Chinese and emoji,
in lines of a few hundred bytes.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORDS = ("the of and to in is was for on that with as by at from his her they this have are not "
         "but had which one you all were their when there can an more if will about would so what "
         "out up into some them other than then its only time new like over such our world model "
         "reward policy token language training data result value function return import def "
         "class self print error because however therefore between through during").split()
OTHER = ["北京是中国的首都。", "数据模型", "こんにちは世界", "😀", "🚀", "naïve café", "Zürich",
         "{", "}", "()", "==", "->", "\t", "    ", "'s", "don't", "I'm", "x = 1", "#", "1,234.5"]


def generate(path, megabytes, seed):
    rng = random.Random(seed)
    target = int(megabytes * 1e6)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            parts = []
            for _ in range(rng.randint(20, 120)):
                r = rng.random()
                if r < 0.8:
                    w = rng.choice(WORDS)
                    parts.append(w.capitalize() if rng.random() < 0.1 else w)
                elif r < 0.9:
                    parts.append(str(rng.randint(0, 10 ** rng.randint(1, 8))))
                else:
                    parts.append(rng.choice(OTHER))
            line = " ".join(parts) + ("." if rng.random() < 0.7 else "")
            f.write(line + "\n")
            written += len(line.encode("utf-8")) + 1


LIBRARY_BENCH = r"""
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
lines = open(sys.argv[2], encoding="utf-8").read().split("\n")
if lines and lines[-1] == "":
    lines.pop()
t0 = time.perf_counter()
tokens = 0
for i in range(0, len(lines), 10000):
    tokens += sum(len(e.ids) for e in tok.encode_batch(lines[i:i + 10000], add_special_tokens=False))
secs = time.perf_counter() - t0
print(json.dumps({"tokens": tokens, "seconds": secs}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", help="directory holding tokenizer.json (default: SmolLM2's)")
    ap.add_argument("--mb", type=float, default=100.0, help="megabytes of text (default 100)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--polar", default=os.path.join(ROOT, "build", "polar"))
    args = ap.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="polar-tokbench-") as tmp:
        tok_dir = args.tokenizer
        if tok_dir is None:
            tok_dir = os.path.join(tmp, "smollm2")
            subprocess.run([python, os.path.join(ROOT, "scripts/examples/smollm2_to_hf.py"),
                            "--out", tok_dir, "--tokenizer-only"], check=True)
        text = os.path.join(tmp, "text.txt")
        generate(text, args.mb, args.seed)
        size = os.path.getsize(text)

        env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="true")
        out = subprocess.run([python, "-c", LIBRARY_BENCH, os.path.join(tok_dir, "tokenizer.json"),
                              text], env=env, check=True, capture_output=True, text=True).stdout
        lib = json.loads(out)
        out = subprocess.run([args.polar, "tokenizer", "bench", "--tokenizer", tok_dir, "--input",
                              text, "--threads", str(args.threads)], check=True,
                             capture_output=True, text=True).stdout
        pol = json.loads(out.strip().splitlines()[-1])

    import tokenizers
    print(f"text: {size / 1e6:.1f} MB generated (seed {args.seed}), tokenizer {tok_dir}, "
          f"{args.threads} thread(s), {os.cpu_count()} CPUs")
    rows = [("polar tokenizer bench", pol["tokens"], pol["seconds"]),
            (f"tokenizers {tokenizers.__version__} encode_batch", lib["tokens"], lib["seconds"])]
    for name, tokens, secs in rows:
        print(f"{name:40s} {tokens:>12d} tokens {secs:8.2f} s "
              f"{tokens / secs / args.threads:>12,.0f} tokens/s per thread "
              f"{size / secs / 1e6 / args.threads:6.2f} MB/s per thread")
    if pol["tokens"] != lib["tokens"]:
        print(f"warning: token counts differ ({pol['tokens']} vs {lib['tokens']})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
