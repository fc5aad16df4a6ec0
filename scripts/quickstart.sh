#!/usr/bin/env bash
# The whole POLAR path on the built-in synthetic data, on CPU:
#   generate policy trajectories -> train a tokenizer -> build pre-training and preference data
#   -> pre-train (policy discrimination) -> fine-tune -> evaluate on held-out prompts/policies,
# and the same fine-tuning from random init (no pre-training) as the baseline, side by side.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/build.sh"
POLAR="$ROOT/build/polar"
DATA="${POLAR_QUICKSTART_DATA:-data/quickstart}"
RUNS="${POLAR_QUICKSTART_RUNS:-runs/quickstart}"
SEED="${POLAR_SEED:-0}"
SHARED="${POLAR_SHARED_PREFIX:-true}"  # false: pack prefix ++ candidate separately (same numbers, slower)
t0=$(date +%s)
rm -rf "$RUNS/pretrain" "$RUNS/finetune" "$RUNS/baseline"
step() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }

step "1/7 generating the synthetic policy pool and its trajectories"
python3 tools/gen_data.py --out "$DATA/raw" --seed "$SEED"

step "2/7 training a sentencepiece tokenizer"
"$POLAR" tokenizer train --input "$DATA/raw/pretrain.jsonl" "$DATA/raw/finetune.jsonl" \
  --vocab-size 1000 --output "$DATA/tokenizer"

step "3/7 building POLAR pre-training groups and preference data"
"$POLAR" data pretrain --trajectories "$DATA/raw/pretrain.jsonl" --tokenizer "$DATA/tokenizer" \
  --output "$DATA/pretrain" --negatives 1 --seed "$SEED" --max-length 512 --max-response-length 160 \
  --eval-fraction 0.05 --template finetune --overwrite
"$POLAR" data preference --input "$DATA/raw/finetune.jsonl" --tokenizer "$DATA/tokenizer" \
  --output "$DATA/finetune" --max-length 512 --max-response-length 160 --overwrite

step "4/7 pre-training (policy discrimination)"
"$POLAR" train --config configs/tiny_pretrain.json --set data.train="$DATA/pretrain" \
  --set run.output_dir="$RUNS/pretrain" --set train.seed="$SEED" \
  --set data.shared_prefix="$SHARED"

step "5/7 fine-tuning the pre-trained model on preferences"
"$POLAR" train --config configs/tiny_finetune.json --set data.train="$DATA/finetune" \
  --set model.init_from="$RUNS/pretrain/final" --set run.output_dir="$RUNS/finetune" --set train.seed="$SEED" \
  --set data.shared_prefix="$SHARED"

step "6/7 baseline: the same fine-tuning from random init (no pre-training)"
"$POLAR" train --config configs/tiny_finetune.json --set data.train="$DATA/finetune" \
  --set model.init_from="" --set model.shape_from="$RUNS/pretrain/final" \
  --set model.tokenizer="$DATA/tokenizer" --set run.output_dir="$RUNS/baseline" --set train.seed="$SEED" \
  --set data.shared_prefix="$SHARED"

step "7/7 evaluating both on held-out prompts and policies, per slice"
for slice in test test_same_family test_other_family; do
  "$POLAR" eval --checkpoint "$RUNS/finetune/final" --data "$DATA/raw/$slice.jsonl" --output "$RUNS/eval_polar_$slice.json" \
    --shared-prefix "$SHARED"
  "$POLAR" eval --checkpoint "$RUNS/baseline/final" --data "$DATA/raw/$slice.jsonl" --output "$RUNS/eval_baseline_$slice.json" \
    --shared-prefix "$SHARED"
done
python3 - "$RUNS" <<'PY'
import json, sys
load = lambda arm, s: json.load(open(f"{sys.argv[1]}/eval_{arm}_{s}.json"))
p, b = load("polar", "test"), load("baseline", "test")
cats = sorted(set(p["per_category"]) | set(b["per_category"]))
print("\nPreference accuracy on the held-out test set (chosen strictly above rejected)")
print(f"{'category':<14}{'n':>6}{'POLAR (pre-trained)':>22}{'baseline (random init)':>25}{'gain':>8}")
for name, pc, bc in [(c, p["per_category"].get(c, {}), b["per_category"].get(c, {})) for c in cats] + [("overall", p, b)]:
    pa, ba = pc.get("accuracy", float("nan")), bc.get("accuracy", float("nan"))
    print(f"{name:<14}{pc.get('n', 0):>6}{pa:>22.3f}{ba:>25.3f}{pa - ba:>+8.3f}")
print("\nPer slice, with 95% Wilson intervals (same_family: the chosen comes from the reference's policy")
print("family; other_family: a separate slice where it comes from another family)")
ci = lambda r: f"{r['accuracy']:.3f} [{r['accuracy_ci95'][0]:.3f}, {r['accuracy_ci95'][1]:.3f}]"
print(f"{'slice':<20}{'n':>6}{'POLAR (pre-trained)':>24}{'baseline (random init)':>24}")
for s in ("test", "test_same_family", "test_other_family"):
    ps, bs = load("polar", s), load("baseline", s)
    print(f"{s:<20}{ps['n']:>6}{ci(ps):>24}{ci(bs):>24}")
PY
step "done in $(( $(date +%s) - t0 ))s; runs under $RUNS/"
