#!/usr/bin/env python3
"""Scale benchmark of `polar data pretrain`: generates a synthetic trajectory corpus (prompts x
policies x 2 samples, ~300 bytes a line, 1% exact duplicates) as 16 JSONL files, then builds it
under a memory budget for 4 input sizes (the first 1, 2, 4 and 16 files) and prints, per size:
input MB, trajectories, wall and CPU seconds, MB/s, stored tokens per CPU second, peak RSS (VmHWM, as
the builder logs it) and the manifest's counts (CPU time is reported because on a shared machine the
wall time measures the other load). Everything it writes lives under --work and is deleted at the end unless
--keep. Standard library only.

  scripts/bench_data.py --polar build/polar --trajectories 10000000 --budget 2GiB --threads 1
"""

import argparse
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time

WORDS = ("the policy model answer reward sample token river mountain number seven count write about "
         "ocean waves light green small large quick slow bright dark north south east west city road "
         "house window garden winter summer morning evening story letter paper music voice field "
         "stone glass metal wood fire water earth cloud rain snow wind star moon sun").split()
POLICIES = 16
FILES = 16


def response_pools(seed):
    rng = random.Random(seed)
    pools = []
    for p in range(POLICIES):
        style = WORDS[p::POLICIES]
        pools.append([" ".join(rng.choices(style, k=12) + rng.choices(WORDS, k=10 + rng.randrange(12)))
                      for _ in range(100_000 // POLICIES)])
    return pools


def write_file(job):
    """One file holding whole prompts; every policy answers every prompt twice. Responses are drawn
    from a pool of 100,000 texts (per policy style) and made unique by a suffix."""
    path, f, n_prompts, seed = job
    pools = response_pools(seed)
    rng = random.Random(seed * 1000 + f)
    lo, hi = n_prompts * f // FILES, n_prompts * (f + 1) // FILES
    prompts = [" ".join(rng.choices(WORDS, k=10)) + f" #{i}" for i in range(lo, hi)]
    head = '{"prompt": "%s", "policy": "policy-%02d", "response": "%s %d.%d", "category": "c%d"}\n'
    with open(path, "w", encoding="utf-8") as out:
        for sample in range(2):
            for p in range(POLICIES):
                pool, lines = pools[p], []
                for i, prompt in enumerate(prompts):
                    line = head % (prompt, p, pool[rng.randrange(len(pool))], i, sample, i % 3)
                    lines.append(line)
                    if rng.random() < 0.01:
                        lines.append(line)  # an exact duplicate
                out.write("".join(lines))
    return path


def write_corpus(work, n_trajectories, seed):
    n_prompts = n_trajectories // (POLICIES * 2)
    jobs = [(os.path.join(work, f"corpus-{f:02d}.jsonl"), f, n_prompts, seed) for f in range(FILES)]
    with multiprocessing.Pool(min(FILES, os.cpu_count() or 1)) as pool:
        return pool.map(write_file, jobs)


def train_tokenizer(polar, work, corpus):
    sample = os.path.join(work, "tok-sample.txt")
    with open(corpus, encoding="utf-8") as src, open(sample, "w", encoding="utf-8") as out:
        for k, line in enumerate(src):
            if k >= 20000:
                break
            r = json.loads(line)
            out.write(r["prompt"] + "\n" + r["response"] + "\n")
    tok = os.path.join(work, "tokenizer")
    subprocess.run([polar, "tokenizer", "train", "--input", sample, "--vocab-size", "1000", "--output", tok],
                   check=True, stdout=subprocess.DEVNULL)
    return tok


def build(polar, files, tok, out, budget, threads):
    """Returns wall seconds, CPU seconds, the builder's peak RSS (VmHWM, logged) and the manifest."""
    cmd = ["nice", "-n", "10", polar, "data", "pretrain", "--trajectories", *files, "--tokenizer", tok,
           "--output", out, "--memory-budget", budget, "--threads", str(threads), "--no-progress", "--overwrite"]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"build failed:\n{proc.stdout}\n{proc.stderr}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    logged = re.search(r"peak resident memory (\d+) MiB", proc.stdout + proc.stderr)  # the log goes to stdout
    if not logged:
        sys.exit(f"the builder logged no peak resident memory:\n{proc.stdout}\n{proc.stderr}")
    rss_mib = float(logged.group(1))
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
        return seconds, cpu, rss_mib * 2**20, json.load(f)


def train_and_resume(polar, data, work, steps):
    """Trains `steps` steps on the sharded dataset, and again stopped at steps/2 then resumed."""
    def run(name, extra):
        cmd = [polar, "train", "--config", "configs/tiny_pretrain.json", "--set", f"data.train={data}",
               "--set", f"train.steps={steps}", "--set", f"run.output_dir={work}/{name}", "--set", "eval.every=0",
               "--set", "train.device=cpu", "--set", "run.log_every=1", "--set", f"run.checkpoint_every={steps // 2}"]
        subprocess.run(["nice", "-n", "10", *cmd, *extra], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def losses(name):
        with open(f"{work}/{name}/metrics.jsonl", encoding="utf-8") as f:
            return [json.loads(line)["loss"] for line in f if line.strip() and "loss" in json.loads(line)]

    run("full", [])
    run("split", ["--set", f"run.stop_after_steps={steps // 2}"])
    run("split", ["--resume"])
    a, b = losses("full"), losses("split")
    print(f"train on the sharded build: losses {['%.6f' % x for x in a]}")
    print(f"stopped at step {steps // 2} and resumed: {'identical' if a == b else 'DIFFERENT: ' + str(b)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polar", default="build/polar")
    ap.add_argument("--work", default="/tmp/polar-bench-data")
    ap.add_argument("--trajectories", type=int, default=10_000_000)
    ap.add_argument("--budget", default="2GiB")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sizes", default="1,2,4,16", help="how many of the 16 files each build reads")
    ap.add_argument("--train-steps", type=int, default=0, help="then train N steps on the largest build, resume")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    try:
        start = time.monotonic()
        files = write_corpus(args.work, args.trajectories, 1)
        total = sum(os.path.getsize(f) for f in files)
        print(f"corpus: {len(files)} files, {total / 1e6:.0f} MB, generated in {time.monotonic() - start:.0f} s",
              flush=True)
        tok = train_tokenizer(args.polar, args.work, files[0])
        print("files  input_MB  trajectories  wall_s  cpu_s  MB/s(wall)  MB/s(cpu)  tokens/s(cpu)  peak_RSS_MiB  groups  "
              "duplicates  partitions")
        for n in [int(x) for x in args.sizes.split(",")]:
            out = os.path.join(args.work, "data")
            seconds, cpu, rss, m = build(args.polar, files[:n], tok, out, args.budget, args.threads)
            mb = sum(os.path.getsize(f) for f in files[:n]) / 1e6
            tokens = m["splits"]["train"]["stored_tokens"] + m["splits"]["eval"]["stored_tokens"]
            groups = m["splits"]["train"]["groups"] + m["splits"]["eval"]["groups"]
            print(f"{n:5d}  {mb:8.0f}  {m['records']['accepted']:12d}  {seconds:6.0f}  {cpu:5.0f}  {mb / seconds:10.2f}  "
                  f"{mb / cpu:9.2f}  {tokens / cpu:13.0f}  {rss / 2**20:12.0f}  {groups:6d}  "
                  f"{m['records']['duplicates']:10d}  {m['build']['partitions']:10d}", flush=True)
        shards = len(json.load(open(os.path.join(out, "train", "split.json")))["shards"])
        print(f"largest build: {shards} train shards")
        if args.train_steps:
            train_and_resume(args.polar, out, args.work, args.train_steps)
        print("manifest of the largest build:", json.dumps({k: m[k] for k in ("records", "prompts", "groups_dropped",
                                                                            "splits", "truncation")}))
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
