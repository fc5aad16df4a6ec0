#!/usr/bin/env python3
"""Pre-training -> fine-tuning robustness: pre-train on one synthetic world, then fine-tune the
pre-trained model with each of the remedies the field uses (lower lr, reset or zeroed head, a
linear probe first, a separate head lr, a reward-scale penalty during pre-training) and compare
with fine-tuning from random init. Reports, per variant, the loss of the first fine-tuning step
(how strongly the pre-trained prior disagrees with the preference data), the final training loss,
and accuracy on the test set and on the other-family slice.
Writes OUT/robustness.json and prints a table. Re-running skips finished runs.
"""

import argparse
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import expt  # noqa: E402

OLD = ["train.lr=2e-4", "train.head_lr_scale=1", "train.probe_steps=0", "model.zero_head=false"]
# name: (pre-training run, fine-tuning --set overrides); every variant states its head/lr settings.
VARIANTS = {
    "keep head, lr 2e-4": ("base", OLD),
    "keep head, lr 5e-5": ("base", ["train.lr=5e-5"] + OLD[1:]),
    "reset head": ("base", OLD + ["model.reset_head=true"]),
    "zero head": ("base", OLD[:3] + ["model.zero_head=true"]),
    "zero head, head lr x10": ("base", ["train.lr=2e-4", "train.head_lr_scale=10", "train.probe_steps=0",
                                        "model.zero_head=true"]),
    "zero head, probe 10 steps": ("base", ["train.lr=2e-4", "train.head_lr_scale=10", "train.probe_steps=10",
                                           "model.zero_head=true"]),
    "reward L2 in pre-training, keep head": ("l2", OLD),
    "reward L2 in pre-training, zero head": ("l2", OLD[:3] + ["model.zero_head=true"]),
    "configs/tiny_finetune.json as is": ("base", []),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(expt.ROOT, "runs", "experiments", "robustness"))
    ap.add_argument("--world-seed", type=int, default=1234, help="tools/gen_data.py --seed (its default)")
    ap.add_argument("--template", default="pretrain", choices=["pretrain", "finetune"],
                    help="template of the pre-training data (polar data pretrain's default: pretrain)")
    ap.add_argument("--pretrain-steps", type=int, default=400)
    ap.add_argument("--reward-l2", type=float, default=0.01, help="loss.reward_l2 of the 'l2' pre-training")
    ap.add_argument("--model", default="small", choices=list(expt.SHAPES), help="pre-training model shape")
    ap.add_argument("--seed", type=int, default=0)
    # The reward-L2 variants need a second pre-training run: ask for them by name.
    default = [v for v in VARIANTS if VARIANTS[v][0] == "base" and v != "configs/tiny_finetune.json as is"]
    ap.add_argument("--variants", nargs="+", default=default, choices=list(VARIANTS) + ["scratch"])
    ap.add_argument("--pretrain-only", action="store_true", help="stop after the pre-training runs")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    world = expt.world_dir(args.world_seed, args.template)
    expt.gen_world(world, args.world_seed, args.template)
    pre_sets = [f"data.train={world}/pretrain", f"train.seed={args.seed}", f"train.steps={args.pretrain_steps}",
                "eval.every=0", "eval.max_groups=512", "run.checkpoint_every=0", "run.keep_last=1"] + expt.SHAPES[args.model]
    needed = {VARIANTS[v][0] for v in args.variants if v in VARIANTS}
    pre = {"base": os.path.join(out, "pretrain"), "l2": os.path.join(out, "pretrain_l2")}
    if "base" in needed:
        expt.train("configs/tiny_pretrain.json", pre["base"], pre_sets)
    if "l2" in needed:
        expt.train("configs/tiny_pretrain.json", pre["l2"], pre_sets + [f"loss.reward_l2={args.reward_l2}"])
    if args.pretrain_only:
        return
    ft = [f"data.train={world}/finetune", f"train.seed={args.seed}", "eval.every=0"]
    rows = {}
    for name in ["scratch"] + [v for v in args.variants if v != "scratch"]:
        run_dir = os.path.join(out, "ft_" + "".join(c if c.isalnum() else "_" for c in name))
        if name == "scratch":
            some = pre["base"] if "base" in needed else pre["l2"]
            sets = ft + ["model.init_from=", f"model.shape_from={some}/final", f"model.tokenizer={world}/tokenizer"]
        else:
            source, extra = VARIANTS[name]
            sets = ft + [f"model.init_from={pre[source]}/final"] + extra
        expt.train("configs/tiny_finetune.json", run_dir, sets)
        m = expt.metrics(run_dir)
        rows[name] = {"first_loss": m[0]["loss"], "last_loss": sum(r["loss"] for r in m[-5:]) / len(m[-5:]),
                      "test": expt.evaluate(f"{run_dir}/final", f"{world}/raw/test.jsonl", f"{run_dir}/eval_test.json"),
                      "other_family": expt.evaluate(f"{run_dir}/final", f"{world}/raw/test_other_family.jsonl",
                                                    f"{run_dir}/eval_other_family.json")}
    for source, path in pre.items():
        if source in needed:
            rows[f"pre-trained only ({source})"] = {
                "first_loss": float("nan"), "last_loss": expt.metrics(path)[-1]["loss"],
                "test": expt.evaluate(f"{path}/final", f"{world}/raw/test.jsonl", f"{path}/eval_test.json"),
                "other_family": expt.evaluate(f"{path}/final", f"{world}/raw/test_other_family.jsonl",
                                              f"{path}/eval_other_family.json")}
    expt.write_json(os.path.join(out, "robustness.json"), rows)
    print(f"world seed {args.world_seed}, pre-training template {args.template}, {args.pretrain_steps} pre-training steps")
    print(f"| fine-tuning variant | first FT loss | last FT loss | test acc [95% CI] | other-family acc [95% CI] |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        t, o = r["test"], r["other_family"]
        print(f"| {name} | {r['first_loss']:.3f} | {r['last_loss']:.3f} | {t['accuracy']:.3f} "
              f"[{t['accuracy_ci95'][0]:.3f}, {t['accuracy_ci95'][1]:.3f}] | {o['accuracy']:.3f} "
              f"[{o['accuracy_ci95'][0]:.3f}, {o['accuracy_ci95'][1]:.3f}] |")


if __name__ == "__main__":
    main()
