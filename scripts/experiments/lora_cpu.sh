#!/usr/bin/env bash
# LoRA (r = 8, 16, 64; alpha = 2r) against full fine-tuning on the CPU at the quickstart's shape,
# all from the quickstart's pre-trained checkpoint: median step time, peak RSS (the trainer's
# RSS high-water mark) and accuracy on the held-out test slice, per seed. Reuses the quickstart's
# data and pre-trained model when present (run scripts/quickstart.sh first, or this runs its
# steps 1-4; PRETRAIN_STEPS shortens its pre-training). SEEDS="0 1 2" for more seeds; LORA_LR sets
# the adapters' learning rate (full fine-tuning keeps the config's).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
POLAR="$ROOT/build/polar"
DATA="${POLAR_QUICKSTART_DATA:-data/quickstart}"
PRE="${POLAR_PRETRAINED:-runs/quickstart/pretrain/final}"
RUNS="${LORA_RUNS:-runs/lora_cpu}"
SEEDS="${SEEDS:-0}"
LORA_LR="${LORA_LR:-1e-3}"
PRETRAIN_STEPS="${PRETRAIN_STEPS:-}"  # empty: the quickstart's 800
mkdir -p "$RUNS"

if [ ! -f "$PRE/model.safetensors" ]; then
  [ -f "$DATA/raw/test.jsonl" ] || python3 tools/gen_data.py --out "$DATA/raw" --seed 0
  "$POLAR" tokenizer train --input "$DATA/raw/pretrain.jsonl" "$DATA/raw/finetune.jsonl" \
    --vocab-size 1000 --output "$DATA/tokenizer"
  "$POLAR" data pretrain --trajectories "$DATA/raw/pretrain.jsonl" --tokenizer "$DATA/tokenizer" \
    --output "$DATA/pretrain" --negatives 1 --seed 0 --max-length 512 --max-response-length 160 \
    --eval-fraction 0.05 --template finetune --overwrite
  "$POLAR" data preference --input "$DATA/raw/finetune.jsonl" --tokenizer "$DATA/tokenizer" \
    --output "$DATA/finetune" --max-length 512 --max-response-length 160 --overwrite
  "$POLAR" train --config configs/tiny_pretrain.json --set data.train="$DATA/pretrain" \
    --set run.output_dir="$(dirname "$PRE")" ${PRETRAIN_STEPS:+--set train.steps=$PRETRAIN_STEPS}
fi

for seed in $SEEDS; do
  for arm in full r8 r16 r64; do
    out="$RUNS/$arm-s$seed"
    extra=()
    if [ "$arm" != full ]; then
      r="${arm#r}"
      extra=(--set model.lora.rank="$r" --set model.lora.alpha="$((2 * r))" --set train.lr="$LORA_LR")
    fi
    rm -rf "$out"
    "$POLAR" train --config configs/tiny_finetune.json --set data.train="$DATA/finetune" \
      --set model.init_from="$PRE" --set run.output_dir="$out" --set train.seed="$seed" \
      --set run.log_every=1 "${extra[@]}" >"$out.log" 2>&1
    "$POLAR" eval --checkpoint "$out/final" --data "$DATA/raw/test.jsonl" --output "$out.eval.json" \
      >>"$out.log" 2>&1
  done
done

python3 - "$RUNS" $SEEDS <<'PY'
import json, re, statistics, sys
runs, seeds = sys.argv[1], sys.argv[2:]
print(f"{'arm':<6}{'seed':>5}{'step s (median)':>17}{'peak RSS MiB':>14}{'test accuracy [95% CI]':>30}")
for arm in ("full", "r8", "r16", "r64"):
    for s in seeds:
        out = f"{runs}/{arm}-s{s}"
        steps = [json.loads(l) for l in open(f"{out}/metrics.jsonl") if l.strip()]
        step_s = statistics.median(x["step_s"] for x in steps if "step_s" in x)
        peak = re.search(r"measured peak ([0-9.]+) MiB", open(f"{out}.log").read())
        ev = json.load(open(f"{out}.eval.json"))
        ci = ev.get("accuracy_ci95", [float("nan")] * 2)
        print(f"{arm:<6}{s:>5}{step_s:>17.3f}{float(peak.group(1)) if peak else float('nan'):>14.1f}"
              f"{ev['accuracy']:>12.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
PY
