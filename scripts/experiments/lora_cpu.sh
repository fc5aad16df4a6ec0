#!/usr/bin/env bash
# LoRA (r = 8, 16, 64; alpha = 2r) against full fine-tuning on the CPU at the quickstart's shape,
# all from the quickstart's pre-trained checkpoint: median step time, peak RSS (the trainer's
# RSS high-water mark), CPU-seconds per step (user + sys of the whole training process over its
# steps: less distorted than wall time when other jobs share the cores) and accuracy on the
# held-out test slice, per seed, with the 1-minute load average before and after each run. Reuses the quickstart's
# data and pre-trained model when present (run scripts/quickstart.sh first, or this runs its
# steps 1-4; PRETRAIN_STEPS shortens its pre-training). SEEDS="0 1 2" for more seeds; LORA_LR sets
# the adapters' learning rate (full fine-tuning keeps the config's).
# SHAPE=4x runs a 4x larger step: 4x the groups (and so 4x the tokens) per optimizer step,
# train.batch_groups 64 instead of 16, on the same model and data (the quickstart's sequences are
# fixed by its data, and a 4x-parameter model cannot start from the same pre-trained checkpoint).
# FT_STEPS overrides the config's 40 fine-tuning steps (for either shape). The summary prints, per
# arm, each seed and then the mean over seeds with a 95% t-interval (step time, peak RSS, accuracy).
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
SHAPE="${SHAPE:-quickstart}"          # quickstart | 4x
FT_STEPS="${FT_STEPS:-}"              # empty: the config's 40
shape_args=()
case "$SHAPE" in
  quickstart) ;;
  4x) shape_args=(--set train.batch_groups=64) ;;
  *) echo "SHAPE must be quickstart or 4x, got '$SHAPE'" >&2; exit 2 ;;
esac
[ -z "$FT_STEPS" ] || shape_args+=(--set train.steps="$FT_STEPS")
mkdir -p "$RUNS"

if [ ! -f "$PRE/model.safetensors" ]; then
  . "$ROOT/scripts/lib.sh"
  build_quickstart_data "$DATA"
  "$POLAR" train --config configs/tiny_pretrain.json --set data.train="$DATA/pretrain" \
    --set run.output_dir="$(dirname "$PRE")" ${PRETRAIN_STEPS:+--set train.steps=$PRETRAIN_STEPS}
fi

for seed in $SEEDS; do
  for arm in full r8 r16 r64; do
    out="$RUNS/$arm-s$seed"
    extra=(--set train.device=cpu)
    if [ "$arm" != full ]; then
      r="${arm#r}"
      extra+=(--set model.lora.rank="$r" --set model.lora.alpha="$((2 * r))" --set train.lr="$LORA_LR")
    fi
    rm -rf "$out"
    cut -d' ' -f1-3 /proc/loadavg >"$out.load"  # load averages before and after the run
    /usr/bin/time -f "%e %U %S" -o "$out.time" \
      "$POLAR" train --config configs/tiny_finetune.json --set data.train="$DATA/finetune" \
      --set model.init_from="$PRE" --set run.output_dir="$out" --set train.seed="$seed" \
      --set run.log_every=1 ${shape_args[@]+"${shape_args[@]}"} "${extra[@]}" >"$out.log" 2>&1
    cut -d' ' -f1-3 /proc/loadavg >>"$out.load"
    "$POLAR" eval --checkpoint "$out/final" --data "$DATA/raw/test.jsonl" --output "$out.eval.json" \
      >>"$out.log" 2>&1
  done
done

echo "shape $SHAPE: ${shape_args[*]:-config defaults}; $(uptime)"
python3 - "$RUNS" $SEEDS <<'PY'
import json, math, re, statistics, sys
runs, seeds = sys.argv[1], sys.argv[2:]
# two-sided 95% Student t quantiles by degrees of freedom (no scipy needed)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228}
def mean_ci(xs):
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, float("nan")
    return m, T975.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / math.sqrt(len(xs))
print(f"{'arm':<6}{'seed':>5}{'step s (median)':>17}{'CPU s/step':>12}{'peak RSS MiB':>14}"
      f"{'test accuracy [95% CI]':>30}{'load before/after':>20}")
rows = {}
for arm in ("full", "r8", "r16", "r64"):
    for s in seeds:
        out = f"{runs}/{arm}-s{s}"
        steps = [json.loads(l) for l in open(f"{out}/metrics.jsonl") if l.strip()]
        step_s = statistics.median(x["step_s"] for x in steps if "step_s" in x)
        peak = re.search(r"measured peak ([0-9.]+) MiB", open(f"{out}.log").read())
        peak = float(peak.group(1)) if peak else float("nan")
        ev = json.load(open(f"{out}.eval.json"))
        ci = ev.get("accuracy_ci95", [float("nan")] * 2)
        _, user, sys_ = (float(x) for x in open(f"{out}.time").read().split()[-3:])
        cpu = (user + sys_) / len([x for x in steps if "step_s" in x])
        load = [l.split()[0] for l in open(f"{out}.load").read().splitlines()]
        rows.setdefault(arm, []).append((step_s, cpu, peak, ev["accuracy"]))
        print(f"{arm:<6}{s:>5}{step_s:>17.3f}{cpu:>12.3f}{peak:>14.1f}"
              f"{ev['accuracy']:>12.3f} [{ci[0]:.3f}, {ci[1]:.3f}]{'/'.join(load):>20}")
print(f"\nmean over {len(seeds)} seeds +- 95% t-interval half-width")
print(f"{'arm':<6}{'step s':>18}{'CPU s/step':>18}{'peak RSS MiB':>18}{'test accuracy':>20}")
for arm, r in rows.items():
    c = [mean_ci([x[i] for x in r]) for i in range(4)]
    print(f"{arm:<6}{c[0][0]:>11.3f} +-{c[0][1]:.3f}{c[1][0]:>11.3f} +-{c[1][1]:.3f}"
          f"{c[2][0]:>11.1f} +-{c[2][1]:.1f}{c[3][0]:>13.3f} +-{c[3][1]:.3f}")
PY
