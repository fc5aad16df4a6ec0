#!/usr/bin/env python3
"""Generates polar's built-in synthetic data: a policy pool, its trajectories and preference sets.

Policy pool (tools/gen_data/pool.py): 24 stochastic policies in 6 style families (plain, worked,
terse, chatty, casual, formal) x 4 checkpoints c1..c4. Checkpoints of a family share a style
(answer templates, shown work, hedging, filler, punctuation, casing) and a preferred mistake
(off-by-one, digit swap, operator confusion, random) and differ in skill (P(correct) about 0.3 to
0.9). The "formal" family and one checkpoint of four other families are held out of pre-training.
--style-mix P writes that share of all samples in a random family's style instead of the policy's
own (its content, skill and mistakes stay its own): at 1 the wording says nothing about the policy,
and only what it answers identifies it (0, the default, is the quickstart's world, byte for byte).

Tasks (tools/gen_data/tasks.py): `arithmetic` ("What is 37 + 48?"), `counting` (letters in a word,
words in a sentence, items in a list) with checkable answers, and `writing` ("Write one sentence
about the ocean that uses the word 'waves'.") scored for on-topic words, the required words, no
repetition and a proper ending. Good policies agree on correct answers, so "the candidate says what
the reference says" is learnable from pre-training and is what the preference data rewards.

Outputs under --out (UTF-8 JSONL, one object per line, written atomically):
  pretrain.jsonl  {prompt, policy, response, category}: every pre-training policy answers every
                  pre-training prompt twice, so reference/positive pairs can come from any policy.
  finetune.jsonl  {prompt, reference, chosen, rejected, category}: 12 in-pool policies answer each
                  held-apart prompt; graded by (correct, quality). The reference is a best-graded
                  answer; as in POLAR, closer to the reference's policy is better: the chosen is
                  the best-graded lower answer from the reference's own family (else the second
                  level), the rejected a lower-graded answer from another family.
  test.jsonl      same format; new prompts and all 24 policies (held-out ones included).
  test_same_family.jsonl   the test.jsonl lines whose chosen comes from the reference's family.
  test_other_family.jsonl  a slice on new prompts (as many as test.jsonl) where the chosen comes
                  from ANOTHER family than the reference's and the rejected from a family other
                  than the chosen's: matching the reference's policy family is no answer there.
  score.jsonl     {prompt, reference, output} demo lines for `polar score`.
  policies.json   the pool ({name, family, checkpoint, step, skill, ...}; `polar data pretrain
                  --policies` reads name, family and step for --negatives-from).
  test_content_*.jsonl  content slices on new prompts (as many as test.jsonl), where the chosen and
                  the rejected are both other policies than the reference's and their families
                  cannot decide the pair: same_family (both checkpoints of the reference's family,
                  different levels), other_family_same_skill, other_family_other_skill (two other
                  families, the same / different levels). Only what the answers get right, as the
                  reference does, separates them; the shortcut rates are printed per slice.
--check validates the files, regenerates into a temporary directory to prove determinism, and
prints "gen_data check: OK" (exit status 1 otherwise). Standard library only.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gen_data import build, check, tasks  # noqa: E402

FILES = ("pretrain.jsonl", "finetune.jsonl", "test.jsonl", "test_same_family.jsonl",
         "test_other_family.jsonl", "score.jsonl", "policies.json",
         "test_content_same_family.jsonl", "test_content_other_family_same_skill.jsonl",
         "test_content_other_family_other_skill.jsonl")


def _write_atomic(path, text):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_all(out_dir, args):
    """Generates and writes every file; returns (contents, test-pair metrics)."""
    contents, test_meta = build.generate(args.seed, args.pretrain_prompts, args.finetune_prompts,
                                         args.test_prompts, args.style_mix)
    os.makedirs(out_dir, exist_ok=True)
    for name in FILES:
        if name.endswith(".json"):
            text = json.dumps(contents[name], ensure_ascii=False, indent=1) + "\n"
        else:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in contents[name])
        _write_atomic(os.path.join(out_dir, name), text)
    held_out = {p["name"] for p in contents["policies.json"] if p["held_out"]}
    return contents, {split: build.measure(contents[f"{split}.jsonl"], meta, held_out)
                      for split, meta in test_meta.items()}


def summarise(out_dir, contents, metrics, seconds):
    print(f"gen_data: wrote {out_dir} in {seconds:.2f} s")
    for name in FILES[:5]:
        counts = {}
        for r in contents[name]:
            cat = r.get("category", "demo")
            counts[cat] = counts.get(cat, 0) + 1
        per = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"  {name:15s} {len(contents[name]):6d} lines ({per})")
    pool = contents["policies.json"]
    print(f"  policies.json   {len(pool)} policies, {sum(p['held_out'] for p in pool)} held out")
    agree = build.pretrain_agreement(contents["pretrain.jsonl"], {p["name"]: p["family"] for p in pool})
    print("pretrain final-answer agreement (arithmetic, counting): " +
          ", ".join(f"{k} {v}" for k, v in agree.items()))
    cols = ("pairs", "ref_answer_match", "longer_wins", "shorter_wins", "tidier_wins",
            "ref_style_match", "held_out_involved", "chosen_ref_family", "rejected_ref_family")
    for split, rows in metrics.items():
        print(f"{split} pairs, chosen-vs-rejected accuracy of heuristics (ties count 1/2):")
        print("  " + " ".join(f"{c:>19s}" for c in ("category",) + cols))
        for cat, row in rows.items():
            print("  " + " ".join(f"{x:>19}" for x in (cat,) + tuple(row[c] for c in cols)))
    print("  ref_answer_match uses the reference (same final answer; writing: more words on the\n"
          "  reference's topic); longer/shorter/tidier are reference-free; ref_style_match\n"
          "  compares wording with the reference, numbers masked; chosen/rejected_ref_family: share\n"
          "  of pairs whose chosen/rejected comes from the reference's policy family.")


def run_check(out_dir, args, metrics):
    check.validate(out_dir, args.pretrain_prompts, args.finetune_prompts, args.test_prompts)
    with tempfile.TemporaryDirectory(prefix="gen_data_check_") as tmp:
        write_all(tmp, args)
        check.same_bytes(out_dir, tmp, FILES)
    overall = metrics["test"].get("all", {})
    if overall.get("pairs", 0) >= 200:  # below that the rates are too noisy to hold to a bar
        best_ref = max(overall["ref_answer_match"], overall["ref_style_match"])
        check._require(best_ref >= 0.65, f"reference heuristics only {best_ref} (< 0.65): "
                       "the reference does not tell chosen from rejected")
        for key in ("longer_wins", "shorter_wins", "tidier_wins"):
            check._require(overall[key] <= 0.7, f"reference-free heuristic {key} = "
                           f"{overall[key]} (> 0.7): pairs are separable without the reference")
        if args.style_mix == 1.0:  # every sample in a random family's style: wording is no sign
            check._require(overall["ref_style_match"] <= 0.6, f"ref_style_match = {overall['ref_style_match']} "
                           "(> 0.6) with --style-mix 1: the reference's wording still picks the chosen")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (created if needed)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--pretrain-prompts", type=int, default=1500)
    parser.add_argument("--finetune-prompts", type=int, default=300)
    parser.add_argument("--test-prompts", type=int, default=600)
    parser.add_argument("--style-mix", type=float, default=0.0,
                        help="share of samples written in a random family's surface style (0: every family "
                             "keeps its own, the quickstart's world; 1: only content identifies a policy)")
    parser.add_argument("--check", action="store_true", help="validate the output and determinism")
    args = parser.parse_args(argv)
    if not 0.0 <= args.style_mix <= 1.0:
        parser.error(f"--style-mix must be in [0, 1], got {args.style_mix}")
    for flag in ("pretrain_prompts", "finetune_prompts", "test_prompts"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")

    start = time.perf_counter()
    contents, metrics = write_all(args.out, args)
    summarise(args.out, contents, metrics, time.perf_counter() - start)
    if args.check:
        try:
            run_check(args.out, args, metrics)
        except (check.CheckError, ValueError) as e:
            print(f"gen_data check: FAILED: {e}", file=sys.stderr)
            return 1
        print("gen_data check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
