#!/usr/bin/env python3
"""Scaling sweep of POLAR pre-training on the built-in synthetic world: several model sizes x
several compute budgets, validation loss at each, and the paper's power law L = a * C^b fitted
(least squares in log-log) on the compute frontier (the points no cheaper point beats), with R^2.

A budget is either its own run (--steps S1 S2 ...: one run per size and budget, each with its
full learning-rate schedule, as the paper) or, cheaper, an evaluation along one run per size
(--eval-every N: the loss after every N steps of the longest run). C = 6 x non-embedding
parameters x training tokens. Validation loss is the pre-training loss on the first
--eval-groups groups of the held-out split (the same groups for every run).
The learning rate is tuned per size (--lrs, at least two values): every size is first trained
at each rate for --tune-steps steps, and the rate with the lowest validation loss there is the
size's rate for every budget (the paper tunes its rate per size; a fixed rate holds larger models
on the ln 2 plateau longer). One rate in --lrs turns tuning off. --fan-in-init starts every size
at weights of standard deviation 1/sqrt(hidden) instead of the config's fixed 0.02 (a width rule:
at 0.02 the narrow models start with near-uniform attention and sit longer on the plateau).
Writes OUT/scaling.json and OUT/scaling.png. Re-running skips finished runs.
"""

import argparse
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import expt  # noqa: E402

# name: (hidden, layers, heads, kv heads, intermediate)
SIZES = {"h16": (16, 1, 2, 1, 44), "h32": (32, 2, 4, 2, 86), "h48": (48, 2, 4, 2, 128),
         "h64": (64, 2, 4, 2, 172), "h96": (96, 3, 4, 2, 256)}


def fit_power_law(points):
    """Least squares of log L = log a + b log C -> (a, b, R^2 in log space)."""
    xs = [math.log(c) for c, _ in points]
    ys = [math.log(l) for _, l in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    log_a = my - b * mx
    ss_res = sum((y - (log_a + b * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return math.exp(log_a), b, 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def frontier(runs):
    """Runs that no run of at most the same compute beats on validation loss."""
    best, out = float("inf"), []
    for r in sorted(runs, key=lambda r: r["compute"]):
        if r["val_loss"] < best:
            best = r["val_loss"]
            out.append(r)
    return out


def plot(runs, front, fit, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name in SIZES:
        rs = sorted((r for r in runs if r["size"] == name), key=lambda r: r["compute"])
        if rs:
            ax.plot([r["compute"] for r in rs], [r["val_loss"] for r in rs], marker="o", label=f"{name} ({rs[0]['params']:,} params)")
    a, b, r2 = fit
    cs = [min(r["compute"] for r in front), max(r["compute"] for r in front)]
    ax.plot(cs, [a * c ** b for c in cs], "k--", label=f"frontier fit L = {a:.3g} C^{b:.3f} (R^2 {r2:.3f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("pre-training compute C (FLOPs)")
    ax.set_ylabel("validation loss (policy discrimination)")
    ax.legend(fontsize=7)
    expt.save_figure(fig, path)


def lr_suffix(args, lr):
    return "" if len(args.lrs) == 1 else f"_lr{lr:g}"


def pretrain(args, world, name, steps, lr, run_dir):
    h, layers, heads, kv, inter = SIZES[name]
    expt.train("configs/tiny_pretrain.json", run_dir, [
        f"data.train={world}/pretrain", f"train.seed={args.seed}", f"train.steps={steps}", f"train.lr={lr}",
        f"train.batch_groups={args.batch_groups}", f"model.hidden_size={h}", f"model.num_layers={layers}",
        f"model.num_heads={heads}", f"model.num_kv_heads={kv}", f"model.intermediate_size={inter}",
        f"eval.every={args.eval_every}", f"eval.max_groups={args.eval_groups}",
        "run.checkpoint_every=0", "run.keep_last=1"] + ([f"model.init_std={h ** -0.5:.6g}"] if args.fan_in_init else []))


def tune_lr(args, world, name):
    """The rate of --lrs with the lowest validation loss after --tune-steps steps (each its own run,
    which is the budget's run too when --tune-steps is one of --steps)."""
    if len(args.lrs) == 1:
        return args.lrs[0]
    losses = {}
    for lr in args.lrs:
        run_dir = os.path.join(args.out, f"{name}_s{args.tune_steps}" + lr_suffix(args, lr))
        pretrain(args, world, name, args.tune_steps, lr, run_dir)
        losses[lr] = [r["eval_loss"] for r in expt.metrics(run_dir) if "eval_loss" in r][-1]
    best = min(losses, key=losses.get)
    expt.log(f"{name}: lr " + ", ".join(f"{lr:g} -> {l:.4f}" for lr, l in losses.items()) + f"; using {best:g}")
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(expt.ROOT, "runs", "experiments", "scaling"))
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--steps", type=int, nargs="+", default=[60, 120, 240, 480, 960],
                    help="run lengths (compute budgets), in steps: one run each, with its own schedule")
    ap.add_argument("--eval-every", type=int, default=0, help="also a budget every N steps of each run (0: off)")
    ap.add_argument("--batch-groups", type=int, default=16)
    ap.add_argument("--eval-groups", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2],
                    help="learning rates tried per size (the best at --tune-steps is used); one value: no tuning")
    ap.add_argument("--tune-steps", type=int, default=240, help="run length of the learning-rate trials")
    ap.add_argument("--fan-in-init", action="store_true",
                    help="initial weights with standard deviation 1/sqrt(hidden) per size (the config's 0.02 otherwise)")
    ap.add_argument("--style-mix", type=float, default=0.0, help="tools/gen_data.py --style-mix of the world")
    args = ap.parse_args()
    expt.require_matplotlib()
    args.out = os.path.abspath(args.out)
    world = expt.world_dir(args.world_seed, style_mix=args.style_mix)
    expt.gen_world(world, args.world_seed, style_mix=args.style_mix)
    runs, lrs = [], {}
    for name in args.sizes:
        lrs[name] = tune_lr(args, world, name)
        for steps in args.steps:
            run_dir = os.path.join(args.out, f"{name}_s{steps}" + lr_suffix(args, lrs[name]))
            pretrain(args, world, name, steps, lrs[name], run_dir)
            for rec in expt.metrics(run_dir):
                if "eval_loss" in rec:
                    runs.append({"size": name, "steps": rec["step"], "run_steps": steps, "lr": lrs[name],
                                 "params": expt.non_embedding_params(run_dir),
                                 "compute": expt.train_flops(run_dir, rec["step"]), "val_loss": rec["eval_loss"],
                                 "val_accuracy": rec["eval_accuracy"]})
    front = frontier(runs)
    fit = fit_power_law([(r["compute"], r["val_loss"]) for r in front])
    fit_all = fit_power_law([(r["compute"], r["val_loss"]) for r in runs])
    expt.write_json(os.path.join(args.out, "scaling.json"), {
        "runs": runs, "lr_per_size": lrs, "frontier": [f"{r['size']}_s{r['steps']}of{r['run_steps']}" for r in front],
        "fit_frontier": dict(zip(("a", "b", "r2"), fit)), "fit_all": dict(zip(("a", "b", "r2"), fit_all))})
    plot(runs, front, fit, os.path.join(args.out, "scaling.png"))
    print("learning rate per size: " + ", ".join(f"{n} {lr:g}" for n, lr in lrs.items()))
    print(f"{'run':<16}{'params':>9}{'compute':>12}{'val_loss':>10}{'val_acc':>9}")
    for r in sorted(runs, key=lambda r: r["compute"]):
        mark = " *" if r in front else ""
        print(f"{r['size'] + '_s' + str(r['steps']) + 'of' + str(r['run_steps']):<16}{r['params']:>9,}{r['compute']:>12.3g}"
              f"{r['val_loss']:>10.4f}{r['val_accuracy']:>9.3f}{mark}")
    print(f"frontier (*) fit: L = {fit[0]:.4g} * C^{fit[1]:.4f}, R^2 = {fit[2]:.4f} ({len(front)} runs)")
    print(f"all-runs fit:     L = {fit_all[0]:.4g} * C^{fit_all[1]:.4f}, R^2 = {fit_all[2]:.4f} ({len(runs)} runs)")


if __name__ == "__main__":
    main()
