#!/usr/bin/env python3
"""Ablation on the built-in synthetic world: POLAR pre-training + fine-tuning vs the same
fine-tuning from random init vs a reference-free model, over several seeds, per test slice; and
POLAR with the listwise loss (loss.type listwise: the positive against its group's K negatives in
one softmax, K = --listwise-negatives in pre-training) in place of the pairwise Bradley-Terry
loss, pre-training and fine-tuning.

Per seed: pre-train (configs/tiny_pretrain.json) keeping checkpoints along the way, fine-tune
(configs/tiny_finetune.json, its defaults) from several of them, fine-tune from random init, and
fine-tune a reference-free model (every reference replaced by one fixed placeholder, in training
and test). Every model is evaluated on three slices written by tools/gen_data.py:
  all           test.jsonl (the quickstart's test set)
  same_family   its pairs whose chosen comes from the reference's policy family
  other_family  test_other_family.jsonl: the chosen comes from ANOTHER family than the reference's
  content_*     test_content_*.jsonl: chosen and rejected both from other policies than the
                reference's, whose families cannot decide the pair (same family at different
                checkpoints; two other families at the same / different checkpoints)
--negatives-from V... adds one POLAR arm per choice of `polar data pretrain --negatives-from`
(same-family, mixed:P, nearest), each pre-trained on the world's data built with it.
--finetune-prompts N fine-tunes on the world's preference data drawn for N prompts in place of 300
(expt.gen_finetune_world: the same tokenizer, pre-training data and test files, byte for byte; the
test prompts dropped; past 6000 prompts further gen_data draws), for as many epochs as the default
(tiny_finetune.json's steps scaled by the pairs); its fine-tuning runs, results and table carry
the suffix _ft{N}, and the pre-training runs are shared. With --finetune-kind content the N pairs
are of the content slices' kind (other gen_data seeds' content slices; suffix _ftc{N}): the most
direct supervision of checking an answer against the reference that the world gives.
Writes OUT/results.json, OUT/table.md (mean and 95% t interval over seeds) and
OUT/accuracy_vs_pretrain_compute.png. Re-running skips finished steps.
"""

import argparse
import json
import math
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import expt  # noqa: E402

SLICES = {"same_family": "test_same_family.jsonl", "other_family": "test_other_family.jsonl",
          "content_same_family": "test_content_same_family.jsonl",
          "content_other_same_skill": "test_content_other_family_same_skill.jsonl",
          "content_other_other_skill": "test_content_other_family_other_skill.jsonl"}
PLACEHOLDER = "(no reference)"


def ref_free_copy(src, dst):
    """The preference JSONL with every reference replaced by PLACEHOLDER."""
    if os.path.exists(dst):
        return
    with open(src, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    tmp = dst + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            r["reference"] = PLACEHOLDER
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, dst)


def build_ref_free(world):
    raw, out = os.path.join(world, "raw"), os.path.join(world, "ref_free")
    os.makedirs(out, exist_ok=True)
    for name in ["finetune.jsonl", "test.jsonl"] + list(SLICES.values()):
        ref_free_copy(os.path.join(raw, name), os.path.join(out, name))
    if not os.path.exists(os.path.join(out, "finetune", "manifest.json")):
        expt.run([expt.POLAR, "data", "preference", "--input", f"{out}/finetune.jsonl", "--tokenizer",
                  f"{world}/tokenizer", "--output", f"{out}/finetune", "--max-length", 512,
                  "--max-response-length", 160, "--overwrite"], f"{world}/logs/data_ref_free.log")
    return out


def eval_slices(checkpoint, data_dir, out_dir):
    return {name: expt.evaluate(checkpoint, os.path.join(data_dir, f), os.path.join(out_dir, f"eval_{name}.json"))
            for name, f in SLICES.items()}


def finetune_pairs(world):
    with open(os.path.join(world, "raw", "finetune.jsonl"), encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def finetune_steps(world, ft_world):
    """tiny_finetune.json's steps, scaled from the world's fine-tuning pairs to ft_world's (the
    same epochs); None when they are the same data."""
    if ft_world == world:
        return None
    with open(os.path.join(expt.ROOT, "configs", "tiny_finetune.json")) as f:
        steps = json.load(f)["train"]["steps"]
    return math.ceil(steps * finetune_pairs(ft_world) / finetune_pairs(world))


def finetune_suffix(args, world, ft_world):
    """The fine-tuning runs' and results' suffix: none on the world's own data."""
    if ft_world == world:
        return ""
    return ("_ftc" if args.finetune_kind == "content" else "_ft") + str(args.finetune_prompts)


def fresh_shape(args):
    """Overrides that give a fresh model the pre-trained model's shape: any seed's checkpoint when
    one exists, else the same keys as the pre-training (tiny_pretrain.json's model and the shape)."""
    shape = os.path.join(args.out, f"seed{args.seeds[0]}", "pretrain", "final")
    if os.path.exists(os.path.join(shape, "model.safetensors")):
        return [f"model.shape_from={shape}"]
    with open(os.path.join(expt.ROOT, "configs", "tiny_pretrain.json")) as f:
        model = json.load(f)["model"]
    return [f"model.{k}={v}" for k, v in model.items()] + expt.SHAPES[args.model]


def init_std(args):
    """The --init-std override of every model trained from random weights (none: the config's)."""
    return [] if args.init_std is None else [f"model.init_std={args.init_std}"]


def pretrain(args, out_dir, data, seed, extra=()):
    """One pre-training run of the ablation into out_dir on dataset `data` (tiny_pretrain.json with
    the run's steps, rate, batch, shape and initialisation; `extra`: further overrides)."""
    expt.train("configs/tiny_pretrain.json", out_dir, [
        f"data.train={data}", f"train.seed={seed}", f"train.steps={args.pretrain_steps}",
        f"train.lr={args.pretrain_lr}", f"train.batch_groups={args.pretrain_batch_groups}",
        "eval.every=0", "eval.max_groups=512"] + list(extra) + expt.SHAPES[args.model] + init_std(args))


def one_seed(args, world, ft_world, ref_free, seed):
    """{arm: {"compute": FLOPs of pre-training, "slices": {slice: eval JSON}}} for one seed;
    pre-training on `world`, fine-tuning on `ft_world` (the same world, or its _ft{N} data)."""
    base = os.path.join(args.out, f"seed{seed}")
    sfx = finetune_suffix(args, world, ft_world)
    pre = os.path.join(base, "pretrain")
    every = args.pretrain_steps // 4
    if "polar" in args.arms or args.pretrain_only:
        pretrain(args, pre, f"{world}/pretrain", seed, [f"run.checkpoint_every={every}", "run.keep_last=4"])
    if args.pretrain_only:
        return {}
    steps = finetune_steps(world, ft_world)
    tuned = ["configs/tiny_finetune.json", f"data.train={ft_world}/finetune", f"train.seed={seed}", "eval.every=0"] \
        + ([] if steps is None else [f"train.steps={steps}"])
    arms = {}
    if "polar" in args.arms:
        # The end, and unless --final-only also half-way (and quarter-way with --all-points).
        points = [args.pretrain_steps] if args.final_only else [2 * every, args.pretrain_steps]
        for step in ([every] if args.all_points else []) + points:
            ckpt = os.path.join(pre, f"checkpoint-{step}")
            name = "polar" if step == args.pretrain_steps else f"polar@{step}"
            run_dir = os.path.join(base, name.replace("@", "_") + sfx)
            expt.train(tuned[0], run_dir, tuned[1:] + [f"model.init_from={ckpt}"])
            arms[name] = {"compute": expt.train_flops(pre, step),
                          "slices": eval_slices(f"{run_dir}/final", f"{ft_world}/raw", run_dir)}
        arms["pretrain_only"] = {"compute": expt.train_flops(pre), "slices": eval_slices(
            f"{pre}/final", f"{world}/raw", os.path.join(base, "pretrain_eval"))}
    # From random init: the fine-tuning that suits a fresh model (no probe, a random head), with the
    # shape of the pre-trained model.
    fresh = ["model.init_from="] + fresh_shape(args) + init_std(args) + [f"model.tokenizer={ft_world}/tokenizer",
             "train.probe_steps=0", "model.zero_head=false", "train.head_lr_scale=1"]
    for variant in args.negatives_from:
        if variant == "any":
            continue
        name = f"polar_neg={variant}"
        vdir = os.path.join(base, "pretrain_neg_" + variant.replace(":", "_"))
        pretrain(args, vdir, expt.pretrain_data(world, args.world_seed, variant), seed)
        run_dir = os.path.join(base, name.replace("=", "_").replace(":", "_") + sfx)
        expt.train(tuned[0], run_dir, tuned[1:] + [f"model.init_from={vdir}/final"])
        arms[name] = {"compute": expt.train_flops(vdir),
                      "slices": eval_slices(f"{run_dir}/final", f"{ft_world}/raw", run_dir)}
    if "scratch" in args.arms:
        scratch = os.path.join(base, "scratch" + sfx)
        expt.train(tuned[0], scratch, tuned[1:] + fresh)
        arms["scratch"] = {"compute": 0.0, "slices": eval_slices(f"{scratch}/final", f"{ft_world}/raw", scratch)}
    if "polar_listwise" in args.arms:
        # Pre-training with the listwise loss over --listwise-negatives negatives per group (at 1 it
        # equals the pairwise loss exactly), then the same fine-tuning with it.
        k = args.listwise_negatives
        pre_lw = os.path.join(base, "pretrain_listwise" + ("" if k == 1 else f"_k{k}"))
        pretrain(args, pre_lw, expt.pretrain_data(world, args.world_seed, "any", negatives=k), seed,
                 ["loss.type=listwise"])
        run_dir = os.path.join(base, "polar_listwise" + ("" if k == 1 else f"_k{k}") + sfx)
        expt.train(tuned[0], run_dir, tuned[1:] + [f"model.init_from={pre_lw}/final", "loss.type=listwise"])
        arms["polar_listwise"] = {"compute": expt.train_flops(pre_lw), "negatives": k,
                                  "slices": eval_slices(f"{run_dir}/final", f"{ft_world}/raw", run_dir)}
    if "ref_free" in args.arms:
        free = os.path.join(base, "ref_free" + sfx)
        expt.train(tuned[0], free, [f"data.train={ref_free}/finetune"] + tuned[2:] + fresh)
        arms["ref_free"] = {"compute": 0.0, "slices": eval_slices(f"{free}/final", ref_free, free)}
    return arms


ARM_LABELS = {"polar": "POLAR pre-train + FT", "polar_listwise": "POLAR pre-train + FT, listwise loss",
              "scratch": "FT from random init",
              "ref_free": "reference-free FT (random init)", "pretrain_only": "POLAR pre-train only (no FT)"}


def summarise(results, note=""):
    """Markdown table: per arm and slice, mean accuracy and 95% interval over seeds; `note` ends it."""
    seeds = sorted(results)
    first = results[seeds[0]]
    arms = [a for a in ("polar", "polar_listwise", "scratch", "ref_free", "pretrain_only") if a in first] + \
        sorted(a for a in first if a.startswith("polar_neg="))
    lines = [f"| model | " + " | ".join(f"{s} (n={first[arms[0]]['slices'][s]['n']})" for s in SLICES) + " |",
             "|---" * (len(SLICES) + 1) + "|"]
    for arm in arms:
        cells = []
        for s in SLICES:
            mean, lo, hi = expt.mean_ci([results[k][arm]["slices"][s]["accuracy"] for k in seeds])
            cells.append(f"{mean:.3f} [{lo:.3f}, {hi:.3f}]")
        label = ARM_LABELS.get(arm) or f"POLAR pre-train (--negatives-from {arm.split('=', 1)[1]}) + FT"
        if arm == "polar_listwise":
            label += f" ({first[arm].get('negatives', 1)} negatives per group in pre-training)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nMean preference accuracy over {len(seeds)} seeds ({', '.join(map(str, seeds))}) " \
        f"with its 95% t interval; accuracy counts chosen strictly above rejected.{note}\n"


def plot(results, path):
    """Fine-tuned accuracy per slice against pre-training compute; 0 is fine-tuning from random init."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    seeds = sorted(results)
    arms = ["scratch"] + sorted((a for a in results[seeds[0]] if a == "polar" or a.startswith("polar@")),
                                key=lambda a: results[seeds[0]][a]["compute"])
    stat = lambda arm, s: expt.mean_ci([results[k][arm]["slices"][s]["accuracy"] for k in seeds])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for s, color in zip(SLICES, ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange")):
        xs = [sum(results[k][a]["compute"] for k in seeds) / len(seeds) for a in arms]
        stats = [stat(a, s) for a in arms]
        ax.errorbar(xs, [m for m, _, _ in stats], yerr=[[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]],
                    marker="o", color=color, capsize=3, label=f"fine-tuned, {s} slice")
        free = stat("ref_free", s)
        ax.errorbar([0], [free[0]], yerr=[[free[0] - free[1]], [free[2] - free[0]]], marker="x", color=color,
                    capsize=3, linestyle="none", label=f"reference-free, {s} slice")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("pre-training compute (FLOPs, 6 x non-embedding params x tokens); 0 = random init")
    ax.set_ylabel("preference accuracy")
    ax.set_title(f"Fine-tuned accuracy vs pre-training compute ({len(seeds)} seeds, 95% intervals)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    expt.save_figure(fig, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(expt.ROOT, "runs", "experiments", "ablation"))
    ap.add_argument("--world-seed", type=int, default=0, help="tools/gen_data.py --seed (0: the quickstart's)")
    ap.add_argument("--style-mix", type=float, default=0.0,
                    help="tools/gen_data.py --style-mix: share of samples in a random family's surface style "
                         "(0: the quickstart's world; 1: only what a policy answers identifies it)")
    ap.add_argument("--model", default="small", choices=list(expt.SHAPES), help="pre-training model shape")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pretrain-steps", type=int, default=200, help="a multiple of 4")
    ap.add_argument("--pretrain-lr", type=float, default=1e-3, help="peak learning rate of every pre-training run")
    ap.add_argument("--pretrain-batch-groups", type=int, default=32, help="groups per pre-training step")
    ap.add_argument("--init-std", type=float, default=None,
                    help="model.init_std of every run from random weights, pre-training and both random-init "
                         "arms (default: the config's 0.02)")
    ap.add_argument("--pretrain-only", action="store_true", help="stop after the pre-training runs")
    ap.add_argument("--all-points", action="store_true", help="also fine-tune from the quarter-way checkpoint")
    ap.add_argument("--final-only", action="store_true", help="fine-tune only from the final checkpoint")
    ap.add_argument("--negatives-from", nargs="+", default=["any"],
                    help="extra POLAR arms pre-trained with these `polar data pretrain --negatives-from` "
                         "choices (any is the polar arm itself), e.g. same-family mixed:0.5 nearest")
    ap.add_argument("--listwise-negatives", type=int, default=4,
                    help="negatives per group of the listwise arm's pre-training data (1: the pairwise data)")
    ap.add_argument("--finetune-prompts", type=int, default=300,
                    help="fine-tune on the world's preference data for this many prompts (tools/gen_data.py "
                         "--finetune-prompts; the test files stay the default world's), as many epochs")
    ap.add_argument("--finetune-kind", default="preference", choices=["preference", "content"],
                    help="content: fine-tune on --finetune-prompts pairs of the content slices' kind (from "
                         "other gen_data seeds' content slices, the test prompts dropped)")
    ap.add_argument("--arms", nargs="+", default=["polar", "polar_listwise", "scratch", "ref_free"],
                    choices=["polar", "polar_listwise", "scratch", "ref_free"],
                    help="what to run (the plot needs polar, scratch and ref_free)")
    args = ap.parse_args()
    expt.require_matplotlib()
    if args.pretrain_steps < 4 or args.pretrain_steps % 4:
        ap.error("--pretrain-steps must be a positive multiple of 4")
    if args.finetune_prompts < 1:
        ap.error("--finetune-prompts must be >= 1")
    if not 0.0 <= args.style_mix <= 1.0:
        ap.error("--style-mix must be in [0, 1]")
    args.out = os.path.abspath(args.out)
    world = expt.world_dir(args.world_seed, style_mix=args.style_mix)
    expt.gen_world(world, args.world_seed, style_mix=args.style_mix)
    ft_world, note, sfx = world, "", ""
    if args.finetune_prompts != 300 or args.finetune_kind == "content":
        ft_world = expt.finetune_world_dir(args.world_seed, args.finetune_prompts, args.finetune_kind, args.style_mix)
        info = expt.gen_finetune_world(world, ft_world, args.world_seed, args.finetune_prompts, args.finetune_kind,
                                       args.style_mix)
        sfx = finetune_suffix(args, world, ft_world)
        draws = len(info["draws"])
        kind = " of the content slices' kind" if args.finetune_kind == "content" else ""
        note = (f" Fine-tuned on {info['kept']} pairs{kind} ({args.finetune_prompts} prompts"
                + ("" if draws == 1 else f" in {draws} gen_data draws") +
                f", {info['dropped_test_prompts']} dropped for a test prompt) for {finetune_steps(world, ft_world)} steps.")
    ref_free = build_ref_free(ft_world)
    results = {}
    for seed in args.seeds:
        results[seed] = one_seed(args, world, ft_world, ref_free, seed)
        if args.pretrain_only:
            continue
        expt.write_json(os.path.join(args.out, f"results{sfx}.json"), {str(k): v for k, v in results.items()})
    if args.pretrain_only:
        return
    table = summarise(results, note)
    with open(os.path.join(args.out, f"table{sfx}.md"), "w") as f:
        f.write(table)
    print(table)
    if not {"polar", "scratch", "ref_free"} <= set(args.arms):
        print(f"wrote {args.out}/results{sfx}.json, table{sfx}.md")
        return
    plot(results, os.path.join(args.out, f"accuracy_vs_pretrain_compute{sfx}.png"))
    print(f"wrote {args.out}/results{sfx}.json, table{sfx}.md, accuracy_vs_pretrain_compute{sfx}.png")


if __name__ == "__main__":
    main()
