#!/usr/bin/env python3
"""Encoding speed of a tokenizer.json, side by side: polar (`polar tokenizer bench`, each line
encoded as the data builders do) against the `tokenizers` library's encode_batch (what
transformers' fast tokenizers, vLLM and SGLang run), with the same thread count
(RAYON_NUM_THREADS for the library), for each thread count of --threads. Prints tokens/s per
thread. Then (unless --pretrain-mb 0) `polar data pretrain` throughput on the same trajectories
with the tokenizer.json model and with a sentencepiece one, for each thread count.

    .venv/bin/python scripts/bench/tokenizer_speed.py --mb 100 --threads 1,2
    .venv/bin/python scripts/bench/tokenizer_speed.py --tokenizer DIR --mb 20 --threads 2

Without --tokenizer it uses SmolLM2's tokenizer.json (scripts/examples/smollm2_to_hf.py). The
text is generated (seeded): English-like words, numbers and digit runs, code-like punctuation,
runs of spaces and tabs, CJK, Cyrillic, Arabic, Devanagari, combining marks and emoji, in lines
of a few hundred bytes.

`polar data pretrain` needs POLAR's template tokens in the tokenizer: for the tokenizer.json
model the script adds them as `polar import` does for SmolLM2 (`added`: two special added
tokens after the last id, `--tokenizer-json-polar DIR` to give a directory that has them). The
trajectories are the quickstart's (data/quickstart/raw/pretrain.jsonl, when present) and
trajectories cut from the generated text (--pretrain-mb MB: prompts and responses of one line
each, 4 policies x 2 samples per prompt). The sentencepiece model is the quickstart's
(--sentencepiece, default data/quickstart/tokenizer, vocabulary 1,000; byte fallback for
what it has not seen), so the two tokenizers give different token counts for the same text:
both trajectories/s and tokens/s are printed.
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
OTHER = ["北京是中国的首都。", "数据模型", "こんにちは世界", "한국어 텍스트", "Привет, мир",
         "مرحبا بالعالم", "नमस्ते दुनिया", "😀", "🚀", "👩‍💻", "naïve café", "Zürich",
         "e\u0301te\u0301", "{", "}", "()", "==", "->", "\t", "    ", "\t\t  ", "'s", "don't",
         "I'm", "x = 1", "#", "1,234.5", "2026-12-06", "0xDEADBEEF", "3.14159265358979"]


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


def make_trajectories(text_path, out_path, megabytes, seed):
    """Trajectories cut from the generated text: a line is a prompt, the next 8 lines its
    responses (4 policies x 2 samples), until `megabytes` of text are used."""
    rng = random.Random(seed)
    target = int(megabytes * 1e6)
    used = records = 0
    with open(text_path, encoding="utf-8") as f, open(out_path, "w", encoding="utf-8") as out:
        while used < target:
            lines = [f.readline() for _ in range(9)]
            if not lines[-1]:
                break
            prompt = lines[0].rstrip("\n")[:rng.randint(40, 400)]
            used += len(prompt.encode("utf-8"))
            for j, line in enumerate(lines[1:]):
                response = line.rstrip("\n")
                used += len(response.encode("utf-8"))
                out.write(json.dumps({"prompt": prompt, "policy": f"p{j // 2}",
                                      "response": response}, ensure_ascii=False) + "\n")
                records += 1
    return records, used


ADD_POLAR_TOKENS = r"""
import json, sys
from tokenizers import AddedToken, Tokenizer
tok = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
tok.add_special_tokens([AddedToken("<|reward|>", special=True, normalized=False),
                        AddedToken("<|reward_token|>", special=True, normalized=False)])
tok.save(sys.argv[2] + "/tokenizer.json")
"""


def with_polar_tokens(python, src, dst):
    """A copy of the tokenizer directory `src` with POLAR's two template tokens added after the
    last id (what `polar import` chooses, `added`, for SmolLM2)."""
    import shutil
    shutil.copytree(src, dst)
    for name in ("tokenizer.model", "polar_tokenizer.json"):
        if os.path.exists(os.path.join(dst, name)):
            os.remove(os.path.join(dst, name))
    subprocess.run([python, "-c", ADD_POLAR_TOKENS, src, dst], check=True)
    cfg = os.path.join(dst, "tokenizer_config.json")
    if os.path.exists(cfg):  # transformers' view of the added tokens is not read by polar
        os.remove(cfg)


def data_pretrain(polar, trajectories, tokenizer, threads, tmp):
    out = os.path.join(tmp, "ds")
    t0 = time.perf_counter()
    subprocess.run([polar, "data", "pretrain", "--trajectories", trajectories, "--tokenizer",
                    tokenizer, "--output", out, "--negatives", "1", "--seed", "0",
                    "--max-length", "4096", "--max-response-length", "1024", "--eval-fraction",
                    "0", "--threads", str(threads), "--no-progress", "--overwrite"],
                   check=True, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    m = json.load(open(os.path.join(out, "manifest.json")))
    tokens = sum(v["stored_tokens"] for v in m["splits"].values())
    groups = sum(v["groups"] for v in m["splits"].values())
    return {"records": m["records"]["accepted"], "groups": groups, "stored_tokens": tokens,
            "seconds": secs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", help="directory holding tokenizer.json (default: SmolLM2's)")
    ap.add_argument("--mb", type=float, default=100.0, help="megabytes of text (default 100)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--pretrain-mb", type=float, default=20.0,
                    help="MB of generated text made into trajectories for polar data pretrain "
                         "(0: skip the data pretrain part)")
    ap.add_argument("--quickstart-trajectories",
                    default=os.path.join(ROOT, "data/quickstart/raw/pretrain.jsonl"))
    ap.add_argument("--sentencepiece", default=os.path.join(ROOT, "data/quickstart/tokenizer"),
                    help="sentencepiece tokenizer directory for the data pretrain comparison")
    ap.add_argument("--tokenizer-json-polar",
                    help="the tokenizer.json directory with POLAR's template tokens (default: "
                         "--tokenizer's with them added)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--polar", default=os.path.join(ROOT, "build", "polar"))
    args = ap.parse_args()
    python = sys.executable
    thread_counts = [int(t) for t in args.threads.split(",")]
    import tokenizers
    status = 0
    with tempfile.TemporaryDirectory(prefix="polar-tokbench-") as tmp:
        tok_dir = args.tokenizer
        if tok_dir is None:
            tok_dir = os.path.join(tmp, "smollm2")
            subprocess.run([python, os.path.join(ROOT, "scripts/examples/smollm2_to_hf.py"),
                            "--out", tok_dir, "--tokenizer-only"], check=True)
        text = os.path.join(tmp, "text.txt")
        generate(text, args.mb, args.seed)
        size = os.path.getsize(text)
        print(f"text: {size / 1e6:.1f} MB generated (seed {args.seed}), tokenizer {tok_dir}, "
              f"{os.cpu_count()} CPUs, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        print(f"{'encoder':44s}{'threads':>8}{'tokens':>13}{'seconds':>9}"
              f"{'tokens/s per thread':>21}{'MB/s per thread':>17}", flush=True)
        for threads in thread_counts:
            env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
            out = subprocess.run([python, "-c", LIBRARY_BENCH,
                                  os.path.join(tok_dir, "tokenizer.json"), text], env=env,
                                 check=True, capture_output=True, text=True).stdout
            lib = json.loads(out)
            out = subprocess.run([args.polar, "tokenizer", "bench", "--tokenizer", tok_dir,
                                  "--input", text, "--threads", str(threads)], check=True,
                                 capture_output=True, text=True).stdout
            pol = json.loads(out.strip().splitlines()[-1])
            rows = [("polar tokenizer bench", pol["tokens"], pol["seconds"]),
                    (f"tokenizers {tokenizers.__version__} encode_batch", lib["tokens"],
                     lib["seconds"])]
            for name, tokens, secs in rows:
                print(f"{name:44s}{threads:>8}{tokens:>13d}{secs:>9.2f}"
                      f"{tokens / secs / threads:>21,.0f}{size / secs / 1e6 / threads:>17.2f}",
                      flush=True)
            print(f"{'':44s}polar / tokenizers: {lib['seconds'] / pol['seconds']:.2f}x "
                  f"(load average {os.getloadavg()[0]:.2f})", flush=True)
            if pol["tokens"] != lib["tokens"]:
                print(f"warning: token counts differ ({pol['tokens']} vs {lib['tokens']})")
                status = 1

        if args.pretrain_mb > 0:
            polar_dir = args.tokenizer_json_polar
            if polar_dir is None:
                polar_dir = os.path.join(tmp, "tokenizer_json_polar")
                with_polar_tokens(python, tok_dir, polar_dir)
            sets = []
            if os.path.exists(args.quickstart_trajectories):
                sets.append(("quickstart", args.quickstart_trajectories,
                             os.path.getsize(args.quickstart_trajectories)))
            gen = os.path.join(tmp, "trajectories.jsonl")
            records, used = make_trajectories(text, gen, args.pretrain_mb, args.seed)
            sets.append((f"generated {used / 1e6:.0f} MB", gen, os.path.getsize(gen)))
            print(f"\npolar data pretrain (--negatives 1 --max-length 4096 "
                  f"--max-response-length 1024 --eval-fraction 0)", flush=True)
            print(f"{'trajectories':22s}{'tokenizer':16s}{'threads':>8}{'records':>9}"
                  f"{'groups':>8}{'stored tokens':>15}{'seconds':>9}{'records/s':>11}"
                  f"{'tokens/s':>11}{'MB/s':>7}", flush=True)
            for set_name, path, nbytes in sets:
                for threads in thread_counts:
                    for tok_name, d in (("sentencepiece", args.sentencepiece),
                                        ("tokenizer.json", polar_dir)):
                        r = data_pretrain(args.polar, path, d, threads, tmp)
                        print(f"{set_name:22s}{tok_name:16s}{threads:>8}{r['records']:>9}"
                              f"{r['groups']:>8}{r['stored_tokens']:>15,}{r['seconds']:>9.2f}"
                              f"{r['records'] / r['seconds']:>11,.0f}"
                              f"{r['stored_tokens'] / r['seconds']:>11,.0f}"
                              f"{nbytes / r['seconds'] / 1e6:>7.2f}"
                              f"  (load {os.getloadavg()[0]:.2f})", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
