#!/usr/bin/env bash
# Step time of LoRA (r = 8, 16, 64; alpha = 2r) against full fine-tuning, measured with
# `polar bench` on the quickstart's fine-tuning shape (configs/tiny_finetune.json: the shape of
# runs/quickstart/pretrain/final, 16 groups a step, random tokens) or, with SHAPE=4x, 64 groups a
# step. ROUNDS rounds, the four arms alternating in each round so that a change in the machine's
# load falls on every arm alike; prints every round, then per arm the median wall and CPU
# milliseconds per step and peak memory. Needs build/polar and the quickstart's pre-trained model
# (scripts/quickstart.sh).
#   [ROUNDS=5] [STEPS=6] [SHAPE=quickstart|4x] scripts/experiments/lora_step_bench.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
POLAR="$ROOT/build/polar"
PRE="${POLAR_PRETRAINED:-runs/quickstart/pretrain/final}"
ROUNDS="${ROUNDS:-5}"
STEPS="${STEPS:-6}"
SHAPE="${SHAPE:-quickstart}"
OUT="${LORA_BENCH_OUT:-runs/lora_step_bench}"
[ -f "$PRE/model.safetensors" ] || { echo "no $PRE: run scripts/quickstart.sh first" >&2; exit 1; }
case "$SHAPE" in
  quickstart) groups=16 ;;
  4x) groups=64 ;;
  *) echo "SHAPE must be quickstart or 4x, got '$SHAPE'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
echo "lora_step_bench: $ROUNDS rounds x {full, r8, r16, r64}, $STEPS timed steps of $groups groups; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  for arm in full r8 r16 r64; do
    extra=()
    if [ "$arm" != full ]; then
      r="${arm#r}"
      extra=(--set model.lora.rank="$r" --set model.lora.alpha="$((2 * r))")
    fi
    "$POLAR" bench --config configs/tiny_finetune.json --set model.init_from="$PRE" \
      --set train.batch_groups="$groups" --steps "$STEPS" --warmup 1 --lengths polar \
      --output "$OUT/$arm-$round.json" "${extra[@]}" >"$OUT/$arm-$round.log" 2>&1
  done
  echo "round $round done; load: $(cut -d' ' -f1-3 /proc/loadavg)"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
arms = ("full", "r8", "r16", "r64")
res = {a: [json.load(open(f"{out}/{a}-{r}.json")) for r in range(1, rounds + 1)] for a in arms}
print("round " + "".join(f"{a + ' ms/step':>16}" for a in arms))
for r in range(rounds):
    print(f"{r + 1:>5} " + "".join(f"{res[a][r]['ms_per_step']:>16.1f}" for a in arms))
print(f"\n{'arm':<6}{'median ms/step':>16}{'median CPU ms/step':>20}{'vs full (wall)':>16}{'peak MiB':>10}")
full = statistics.median(x["ms_per_step"] for x in res["full"])
for a in arms:
    wall = statistics.median(x["ms_per_step"] for x in res[a])
    cpu = statistics.median(x["cpu_ms_per_step"] for x in res[a])
    peak = max(x["peak_memory_mb"] for x in res[a])
    print(f"{a:<6}{wall:>16.1f}{cpu:>20.1f}{wall / full:>15.2f}x{peak:>10.0f}")
PY
