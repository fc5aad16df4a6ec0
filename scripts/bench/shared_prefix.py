#!/usr/bin/env python3
"""Shared-prefix groups against separate sequences on the CPU, `polar bench` side by side:
  scripts/bench/shared_prefix.py [--bin build/polar] [--baseline-bin OTHER] [--rounds 2] [--threads 2]
                                 [--shape tiny|wide] [--steps 6]
For K = 1, 2, 4, 8 negatives per group, POLAR-shaped lengths (configs/tiny_pretrain.json, 4 groups
a step, --steps timed steps after one untimed), it runs the separate and the shared layout (and, with
--baseline-bin, the same with that binary), alternating configuration by configuration in every
round, and prints per binary the median pairs/s of each layout, the shared/separate ratio against
the goals (1.4x, 1.7x, 2.0x, 2.5x), the token ratio (separate tokens over shared tokens: with the
attention's ratio lower, the most an exact shared layout can gain) and the shared layout's peak
memory. Every round is printed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOALS = {1: 1.4, 2: 1.7, 4: 2.0, 8: 2.5}
# Model shapes: "tiny" is configs/tiny_pretrain.json as it is (hidden 128, head dim 32: at these
# lengths attention is over half the step); "wide" has hidden 512 and head dim 64, so the step is
# mostly matmuls over tokens, as in reward models of real sizes (hidden 2048-4096, where attention
# at these lengths is a few percent of the FLOPs).
SHAPES = {"tiny": [], "wide": ["model.hidden_size=512", "model.num_heads=8", "model.num_kv_heads=4",
                               "model.intermediate_size=1376"]}


def bench(binary, k, shared, args, out):
    cmd = [binary, "bench", "--config", "configs/tiny_pretrain.json", "--lengths", "polar", "--negatives", str(k),
           "--steps", str(args.steps), "--warmup", "1", "--set", "train.batch_groups=4", "--set", "train.device=cpu",
           "--set", f"train.threads={args.threads}", "--set", f"data.shared_prefix={'true' if shared else 'false'}",
           "--output", out]
    for kv in SHAPES[args.shape]:
        cmd += ["--set", kv]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "polar"))
    ap.add_argument("--baseline-bin", default="")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", default="tiny", choices=list(SHAPES), help="model shape (see SHAPES)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per configuration")
    a = ap.parse_args()
    bins = {"this build": a.bin} | ({"baseline": a.baseline_bin} if a.baseline_bin else {})
    runs = {}  # (bin, k, shared) -> [result]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        for r in range(a.rounds):
            for k in GOALS:
                for shared in (False, True):
                    for name, binary in bins.items():
                        res = bench(binary, k, shared, a, out)
                        runs.setdefault((name, k, shared), []).append(res)
                        load = open("/proc/loadavg").read().split()[0]
                        print(f"round {r + 1} {name:<10} K={k} {'shared  ' if shared else 'separate'} "
                              f"{res['pairs_per_s']:7.2f} pairs/s {res['ms_per_step']:8.1f} ms/step "
                              f"{res['tokens_per_step']:6d} tokens/step load {load}", flush=True)
    ok = True
    for name in bins:
        print(f"\n{name} ({bins[name]}), {a.shape} shape, {a.threads} threads, median of {a.rounds} rounds:")
        print("| K | tokens/step separate -> shared | token ratio | pairs/s separate | pairs/s shared | shared / separate "
              "| goal | peak MiB shared |")
        print("|---|---|---|---|---|---|---|---|")
        for k, goal in GOALS.items():
            sep, sh = runs[(name, k, False)], runs[(name, k, True)]
            p_sep = statistics.median(x["pairs_per_s"] for x in sep)
            p_sh = statistics.median(x["pairs_per_s"] for x in sh)
            ratio = p_sh / p_sep
            ok = ok and (ratio >= goal or name != "this build")
            tokens = sep[0]["tokens_per_step"] / sh[0]["tokens_per_step"]
            print(f"| {k} | {sep[0]['tokens_per_step']:,} -> {sh[0]['tokens_per_step']:,} | {tokens:.2f}x | {p_sep:.2f} | {p_sh:.2f} | "
                  f"{ratio:.2f}x | {goal}x | {max(x['peak_memory_mb'] for x in sh):.0f} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
