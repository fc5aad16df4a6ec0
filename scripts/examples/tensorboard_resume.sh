#!/usr/bin/env bash
# TensorBoard curves across a stop and a crash, on the quickstart's data and pre-training config
# (200 steps): run A stops at step 120 (run.stop_after_steps) and resumes; run B is killed with
# SIGKILL after it logged step 140 (newest checkpoint 120) and resumes. TensorBoard's own readers
# (tests/train/tensorboard_reader.py) then read each run's tensorboard/ directory; the script
# checks every number of metrics.jsonl at every step, each step once, and prints a summary.
# Needs the quickstart's data (scripts/quickstart.sh, or its steps 1-3) and build/polar.
# POLAR_THREADS=1 helps on a busy machine (0: LibTorch's default).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
POLAR="$ROOT/build/polar"
DATA="${POLAR_QUICKSTART_DATA:-data/quickstart}"
OUT="${1:-runs/tensorboard_resume}"
[ -f "$DATA/pretrain/manifest.json" ] || { echo "no $DATA/pretrain: run scripts/quickstart.sh first" >&2; exit 1; }
rm -rf "$OUT"
train() {
  "$POLAR" train --config configs/tiny_pretrain.json --set data.train="$DATA/pretrain" \
    --set train.steps=200 --set eval.every=50 --set run.checkpoint_every=40 --set run.log_every=40 \
    --set train.threads="${POLAR_THREADS:-0}" "$@"
}

echo "=== A: stop at 120, resume"
train --set run.output_dir="$OUT/A" --set run.stop_after_steps=120
train --set run.output_dir="$OUT/A" --resume

echo "=== B: killed after step 140 (newest checkpoint 120), resume"
(exec "$POLAR" train --config configs/tiny_pretrain.json --set data.train="$DATA/pretrain" \
  --set train.steps=200 --set eval.every=50 --set run.checkpoint_every=40 --set run.log_every=40 \
  --set train.threads="${POLAR_THREADS:-0}" --set run.output_dir="$OUT/B") &
pid=$!  # polar itself (exec), so that SIGKILL stops training, not a subshell
until [ -f "$OUT/B/metrics.jsonl" ] && [ "$(wc -l < "$OUT/B/metrics.jsonl")" -ge 140 ]; do sleep 0.2; done
kill -9 "$pid"; wait "$pid" || true
echo "killed at step $(wc -l < "$OUT/B/metrics.jsonl") of metrics.jsonl; checkpoints: $(ls "$OUT/B" | grep checkpoint- | tr '\n' ' ')"
train --set run.output_dir="$OUT/B" --resume

for run in A B; do
  .venv/bin/python tests/train/tensorboard_reader.py "$OUT/$run/tensorboard" "$OUT/$run/tensorboard_read.json"
  .venv/bin/python - "$OUT/$run" <<'PY'
import json, os, struct, sys
run = sys.argv[1]
metrics = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if l.strip()]
read = json.load(open(f"{run}/tensorboard_read.json"))
tag = lambda k: "eval/" + k[5:] if k.startswith("eval_") else "train/" + k
want = {}
for rec in metrics:
    for k, v in rec.items():
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
            want.setdefault(tag(k), []).append([rec["step"], struct.unpack("f", struct.pack("f", v))[0]])
files = sorted(f for f in os.listdir(f"{run}/tensorboard") if "tfevents" in f)
# What the files hold before TensorBoard purges: train/loss points per file, and restart markers.
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
raw = []
for f in files:
    n, start = 0, None
    for ev in EventFileLoader(f"{run}/tensorboard/{f}").Load():
        n += any(v.tag == "train/loss" for v in ev.summary.value)
        if ev.HasField("session_log"):
            start = ev.step
    raw.append(f"{n} (START at step {start})")
for reader in ("scalars", "tensors"):
    got = read[reader]
    assert sorted(got) == sorted(want), (reader, sorted(got), sorted(want))
    for t in want:
        assert got[t] == want[t], (reader, t, got[t][:3], want[t][:3])
steps = [p[0] for p in read["scalars"]["train/loss"]]
print(f"{os.path.basename(run)}: {len(files)} event files holding train/loss records: {' + '.join(raw)}")
print(f"{os.path.basename(run)}: read back: {len(want)} scalar tags; train/loss at "
      f"{len(steps)} steps ({steps[0]}..{steps[-1]}, each once); eval/accuracy at "
      f"{[p[0] for p in read['scalars'].get('eval/accuracy', [])]}; both readers equal metrics.jsonl "
      f"(float32) at every step")
PY
done
