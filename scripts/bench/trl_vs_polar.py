#!/usr/bin/env python3
"""polar against TRL's RewardTrainer, side by side on the same token ids and model shape (CPU).

Both sides train a randomly initialised fp32 Llama reward model of the quickstart's shape
(configs/tiny_pretrain.json's model section, about 0.86M parameters) on the quickstart's
fine-tuning preference data, 16 pairs a step, the same number of steps and threads. The ids are
read from polar's own shards (prefix ++ candidate, exactly what polar trains on) and given to TRL
pre-tokenized, so neither side tokenizes. Rounds alternate (polar, TRL[, TRL defaults]) so load
changes on the machine hit both; the summary takes medians over rounds.

Measured per run: pairs/s over the timed steps (the first --warmup steps dropped; each side's
step time covers batch assembly, forward, backward, clip and optimizer step), tokens computed per
step (polar: prefix once per group with data.shared_prefix; TRL: its padded batch), real tokens
(every pair's two sequences, no padding), the process's peak RSS (wait4) and pairs per CPU-second
of the timed steps (TRL: process CPU time between step callbacks; polar: the run's CPU time minus
that of a run of only the untimed steps), which counts less of the time other processes held the
cores (threads that spin-wait still count).

Usage: scripts/bench/trl_vs_polar.py [--polar build/polar] [--data data/quickstart/finetune]
       [--rounds 8] [--steps 40] [--trl-defaults-rounds 4] [--out-dir runs/bench_trl]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import polar_shards  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--polar", default=str(ROOT / "build/polar"), help="polar binary")
    p.add_argument("--data", default=str(ROOT / "data/quickstart/finetune"),
                   help="built preference dataset (made as in scripts/quickstart.sh when missing)")
    p.add_argument("--venv", default=str(ROOT / ".venv-trl"), help="TRL venv (created when missing)")
    p.add_argument("--out-dir", default=str(ROOT / "runs/bench_trl"))
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=2, help="first steps of every run not timed")
    p.add_argument("--batch", type=int, default=16, help="pairs a step")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shared-prefix", default="true", choices=["true", "false"])
    p.add_argument("--trl-defaults-rounds", type=int, default=0, metavar="N",
                   help="also run TRL with its default activation checkpointing in the first N rounds")
    args = p.parse_args()
    if args.rounds < 1 or args.steps <= args.warmup:
        p.error("need --rounds >= 1 and --steps > --warmup")
    return args


def run_measured(cmd, env, log_path):
    """Runs cmd; returns (wall seconds, peak RSS MiB, CPU seconds). Fails loudly with the log's tail."""
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        tail = Path(log_path).read_text()[-3000:]
        sys.exit(f"error: {' '.join(map(str, cmd))} failed (exit {os.waitstatus_to_exitcode(status)}); "
                 f"log {log_path}:\n{tail}")
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def ensure_data(args, env):
    data = Path(args.data)
    if (data / "train/split.json").exists():
        return data
    raw = data.parent / "raw"
    tok = data.parent / "tokenizer"
    print(f"building {data} as scripts/quickstart.sh does (steps 1-3)", flush=True)
    steps = [
        [sys.executable, "tools/gen_data.py", "--out", raw, "--seed", "0"],
        [args.polar, "tokenizer", "train", "--input", raw / "pretrain.jsonl", raw / "finetune.jsonl",
         "--vocab-size", "1000", "--output", tok],
        [args.polar, "data", "preference", "--input", raw / "finetune.jsonl", "--tokenizer", tok, "--output", data,
         "--max-length", "512", "--max-response-length", "160", "--overwrite"],
    ]
    for i, cmd in enumerate(steps):
        run_measured([str(c) for c in cmd], env, Path(args.out_dir) / f"data_{i}.log")
    return data


def write_pairs(data, path):
    """The ids polar trains on, one pair a line: chosen = prefix ++ candidate 0, rejected = ++ candidate 1."""
    groups = polar_shards.read_split(data / "train")
    real = []
    with open(path, "w") as f:
        for prefix, cands in groups:
            if len(cands) != 2:
                sys.exit(f"error: {data}/train: a group has {len(cands)} candidates, a preference pair needs 2")
            f.write(json.dumps({"chosen_ids": prefix + cands[0], "rejected_ids": prefix + cands[1]}) + "\n")
            real.append(2 * len(prefix) + len(cands[0]) + len(cands[1]))
    return len(groups), statistics.mean(real)


def polar_command(args, data, out):
    shape = json.loads((ROOT / "configs/tiny_pretrain.json").read_text())["model"]
    cmd = [args.polar, "train", "--config", str(ROOT / "configs/tiny_finetune.json"),
           "--set", f"data.train={data}", "--set", "model.init_from=", "--set", f"model.tokenizer={data / 'tokenizer'}",
           "--set", f"run.output_dir={out}", "--set", f"train.steps={args.steps}",
           "--set", f"train.batch_groups={args.batch}", "--set", "train.device=cpu",
           "--set", f"train.threads={args.threads}", "--set", f"data.shared_prefix={args.shared_prefix}",
           "--set", "run.log_every=10"]
    for key, value in shape.items():
        cmd += ["--set", f"model.{key}={value}"]
    return cmd


def polar_startup_cpu(args, data, env, out):
    """CPU seconds of a polar run of only the untimed steps: subtracted to get the timed steps' CPU."""
    short = argparse.Namespace(**dict(vars(args), steps=args.warmup))
    return run_measured(polar_command(short, data, out), env, out.with_suffix(".log"))[2]


def polar_run(args, data, env, out, startup_cpu):
    wall, rss, cpu = run_measured(polar_command(args, data, out), env, out.with_suffix(".log"))
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed = steps[args.warmup:]
    return {"pairs_per_s": sum(s["pairs"] for s in timed) / sum(s["step_s"] for s in timed),
            "pairs_per_cpu_s": sum(s["pairs"] for s in timed) / max(cpu - startup_cpu, 1e-9),
            "computed_tokens_per_step": statistics.mean(s["tokens"] for s in steps),
            "step_s": [s["step_s"] for s in steps], "last_loss": steps[-1]["loss"],
            "peak_rss_mib": rss, "wall_s": wall}


def trl_run(args, pairs, shape, env, out, checkpointing):
    cmd = [str(Path(args.venv) / "bin/python"), str(ROOT / "scripts/bench/trl_side.py"), "--pairs", str(pairs),
           "--shape", str(shape), "--output", str(out), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--batch", str(args.batch), "--threads", str(args.threads)]
    if checkpointing:
        cmd.append("--gradient-checkpointing")
    wall, rss, _ = run_measured(cmd, env, out.with_suffix(".log"))
    result = json.loads(out.read_text())
    result.update(peak_rss_mib=rss, wall_s=wall)
    return result


def summarize(runs, real_per_pair, batch):
    polar = runs["polar"]
    rows = {}
    for side, rs in runs.items():
        pps = [r["pairs_per_s"] for r in rs]
        computed = statistics.median(r["computed_tokens_per_step"] for r in rs)
        real = statistics.median(r.get("real_tokens_per_step", real_per_pair * batch) for r in rs)
        rows[side] = {
            "pairs_per_s_median": statistics.median(pps), "pairs_per_s_min": min(pps), "pairs_per_s_max": max(pps),
            "computed_tokens_per_step": computed, "real_tokens_per_step": real,
            "computed_tokens_per_s": statistics.median(r["pairs_per_s"] * r["computed_tokens_per_step"] / batch
                                                       for r in rs),
            "peak_rss_mib_median": statistics.median(r["peak_rss_mib"] for r in rs),
            "pairs_per_cpu_s_median": statistics.median(r["pairs_per_cpu_s"] for r in rs),
            "polar_speedup_per_round": [p["pairs_per_s"] / r["pairs_per_s"] for p, r in zip(polar, rs)],
        }
    for side, row in rows.items():
        row["polar_speedup_median"] = statistics.median(row["polar_speedup_per_round"])
        row["polar_per_computed_token"] = rows["polar"]["computed_tokens_per_s"] / row["computed_tokens_per_s"]
    return rows


NAMES = {"polar": "polar (shared prefix {sp})", "trl": "TRL RewardTrainer, checkpointing off",
         "trl_defaults": "TRL RewardTrainer, checkpointing on (TRL default)"}


def markdown(rows, args):
    out = ["| run | pairs/s median (min-max) | polar speed-up (median of rounds) | tokens computed/step "
           "| real tokens/step | computed/real | computed tokens/s | polar per computed token | pairs per CPU-s "
           "| peak RSS MiB |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for side, r in rows.items():
        out.append(f"| {NAMES[side].format(sp=args.shared_prefix)} | {r['pairs_per_s_median']:.1f} "
                   f"({r['pairs_per_s_min']:.1f}-{r['pairs_per_s_max']:.1f}) | {r['polar_speedup_median']:.2f}x "
                   f"| {r['computed_tokens_per_step']:,.0f} | {r['real_tokens_per_step']:,.0f} "
                   f"| {r['computed_tokens_per_step'] / r['real_tokens_per_step']:.2f} "
                   f"| {r['computed_tokens_per_s']:,.0f} | {r['polar_per_computed_token']:.2f}x "
                   f"| {r['pairs_per_cpu_s_median']:.1f} "
                   f"| {r['peak_rss_mib_median']:,.0f} |")
    for side, r in rows.items():
        if side != "polar":
            ratios = ", ".join(f"{x:.2f}" for x in r["polar_speedup_per_round"])
            out.append(f"\npolar / {side} pairs/s per round: {ratios}")
    return "\n".join(out)


def main():
    args = parse_args()
    if not os.access(args.polar, os.X_OK):
        sys.exit(f"error: --polar {args.polar}: not an executable (build it with scripts/build.sh or pass its path)")
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    args.out_dir = str(out_dir)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TOKENIZERS_PARALLELISM="false")
    subprocess.run([str(ROOT / "scripts/bench/setup_trl_venv.sh"), args.venv], check=True)
    data = ensure_data(args, env).resolve()
    pairs = out_dir / "pairs.jsonl"
    n_pairs, real_per_pair = write_pairs(data, pairs)
    sides = ["polar", "trl"] + (["trl_defaults"] if args.trl_defaults_rounds > 0 else [])
    runs = {side: [] for side in sides}
    shape = out_dir / "shape.json"
    startup_cpu = polar_startup_cpu(args, data, env, out_dir / "polar_startup")
    for rnd in range(args.rounds):
        for side in sides:
            if side == "trl_defaults" and rnd >= args.trl_defaults_rounds:
                continue
            out = out_dir / f"{side}_{rnd}"
            load = os.getloadavg()[0]
            if side == "polar":
                runs[side].append(polar_run(args, data, env, out, startup_cpu))
                resolved = json.loads((out / "final/config.json").read_text())["model"]
                shape.write_text(json.dumps(resolved))  # TRL builds exactly the shape polar resolved
            else:
                runs[side].append(trl_run(args, pairs, shape, env, out.with_suffix(".json"), side == "trl_defaults"))
            r = runs[side][-1]
            r["load_average_1min_before"] = load
            print(f"round {rnd + 1}/{args.rounds} {side:<13} {r['pairs_per_s']:7.1f} pairs/s "
                  f"{r['computed_tokens_per_step']:7.0f} tokens/step  peak {r['peak_rss_mib']:6.0f} MiB", flush=True)
    rows = summarize(runs, real_per_pair, args.batch)
    table = markdown(rows, args)
    print("\n" + table)
    trl = runs["trl"][0]
    report = {"settings": {k: v for k, v in vars(args).items()}, "pairs_in_data": n_pairs,
              "real_tokens_per_pair": real_per_pair, "trl_parameters": trl["parameters"], "torch": trl["torch"],
              "load_average_at_end": os.getloadavg(), "summary": rows, "runs": runs, "table": table}
    (out_dir / "trl_vs_polar.json").write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out_dir / 'trl_vs_polar.json'}")


if __name__ == "__main__":
    main()
