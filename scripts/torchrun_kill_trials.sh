#!/usr/bin/env bash
# Restart trials under PyTorch's own launcher: the venv's torchrun (default static rendezvous,
# --max-restarts 1, --no-python) runs `polar train` on 2 CPU ranks over 127.0.0.1; in each trial
# one worker (a random rank) is SIGKILLed at a random step (every 4th trial: at a random point
# of a checkpoint save, through POLAR_KILL_AT). A trial passes when torchrun exits 0 within the
# timeout and the final weights are byte-identical to an uninterrupted run's.
#   scripts/torchrun_kill_trials.sh [N=20]
# Environment: POLAR_TRIALS_DIR (work dir, default runs/torchrun_trials), POLAR_TRIALS_STEPS (60),
# POLAR_TRIALS_EVERY (checkpoint interval, 10), POLAR_TRIALS_TIMEOUT (seconds per run, 600),
# POLAR_TRIALS_RDZV (static | c10d).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N="${1:-20}"
POLAR="$ROOT/build/polar"
TORCHRUN="$ROOT/.venv/bin/torchrun"
WORK="${POLAR_TRIALS_DIR:-runs/torchrun_trials}"
STEPS="${POLAR_TRIALS_STEPS:-60}"
EVERY="${POLAR_TRIALS_EVERY:-10}"
TIMEOUT="${POLAR_TRIALS_TIMEOUT:-600}"
RDZV="${POLAR_TRIALS_RDZV:-static}"
[ -x "$POLAR" ] || { echo "build/polar is missing: run scripts/build.sh" >&2; exit 2; }
[ -x "$TORCHRUN" ] || { echo "$TORCHRUN is missing: run scripts/setup.sh" >&2; exit 2; }
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"

# A small POLAR pre-training set (synthetic trajectories, as the quickstart builds them).
if [ ! -f "$WORK/data/pretrain/manifest.json" ]; then
  python3 tools/gen_data.py --out "$WORK/data/raw" --pretrain-prompts 100 --finetune-prompts 10 \
    --test-prompts 10 >/dev/null
  "$POLAR" tokenizer train --input "$WORK/data/raw/pretrain.jsonl" --vocab-size 1000 \
    --output "$WORK/data/tokenizer" >/dev/null
  "$POLAR" data pretrain --trajectories "$WORK/data/raw/pretrain.jsonl" \
    --tokenizer "$WORK/data/tokenizer" --output "$WORK/data/pretrain" --negatives 1 \
    --max-length 256 --max-response-length 96 --template finetune --overwrite >/dev/null
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# train RUN_DIR LOG [ENV=VALUE ...]: torchrun in the background; sets LAUNCHER.
train() {
  local run="$1" log="$2" port rdzv
  shift 2
  port="$(free_port)"
  if [ "$RDZV" = c10d ]; then
    rdzv=(--rdzv-backend c10d --rdzv-endpoint "127.0.0.1:$port")
  else
    rdzv=(--master-addr 127.0.0.1 --master-port "$port")
  fi
  env OMP_NUM_THREADS=1 "$@" timeout -k 10 "$TIMEOUT" "$TORCHRUN" --nnodes 1 --nproc-per-node 2 \
    --max-restarts 1 "${rdzv[@]}" --no-python "$POLAR" train --config configs/tiny_pretrain.json \
    --set data.train="$WORK/data/pretrain" --set run.output_dir="$run" \
    --set train.steps="$STEPS" --set train.batch_groups=8 --set train.threads=1 \
    --set train.dist_timeout_s=60 --set model.hidden_size=64 --set model.num_layers=2 \
    --set model.intermediate_size=172 --set eval.every=0 --set run.log_every=1 \
    --set run.checkpoint_every="$EVERY" --set run.keep_last=2 >"$log" 2>&1 &
  LAUNCHER=$!
}

# The newest step in RUN_DIR/metrics.jsonl (0 before the first).
current_step() {
  local m="$1/metrics.jsonl"
  [ -f "$m" ] || { echo 0; return; }
  grep -o '"step":[0-9]*' "$m" | tail -1 | cut -d: -f2 || echo 0
}

# The worker of the first round whose RANK is $1 (a descendant of torchrun), or "".
worker_pid() {
  local pid
  for pid in $(pgrep -f -- "$POLAR train" || true); do
    [ -r "/proc/$pid/environ" ] || continue
    if tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "RANK=$1" &&
       tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "TORCHELASTIC_RESTART_COUNT=0" &&
       tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "POLAR_TRIAL=$TRIAL"; then
      echo "$pid"
      return
    fi
  done
}

REF="$WORK/reference"
if [ ! -f "$REF/final/model.safetensors" ]; then
  rm -rf "$REF"
  TRIAL=reference
  start=$(date +%s)
  train "$REF" "$WORK/reference.log" POLAR_TRIAL=reference
  wait "$LAUNCHER" || { echo "the uninterrupted run failed:"; tail -30 "$WORK/reference.log"; exit 1; }
  echo "reference: uninterrupted run of $STEPS steps in $(( $(date +%s) - start )) s"
fi

POINTS=(save.staged save.shard_written save.model_written save.before_manifest save.before_commit save.committed)
passed=0 hangs=0 failed=0
for i in $(seq 1 "$N"); do
  TRIAL="trial$i"
  run="$WORK/$TRIAL"
  rm -rf "$run"
  rank=$((RANDOM % 2))
  start=$(date +%s)
  if [ $((i % 4)) -eq 0 ]; then
    # Rank 0 alone writes all but the shards: the manifest/rename points kill rank 0.
    point="${POINTS[$((RANDOM % ${#POINTS[@]}))]}"
    case "$point" in save.model_written | save.before_manifest | save.before_commit) rank=0 ;; esac
    nth=$((1 + RANDOM % (STEPS / EVERY - 1)))
    how="at $point of save $nth"
    train "$run" "$WORK/$TRIAL.log" POLAR_TRIAL="$TRIAL" POLAR_KILL_AT="$point@$nth" POLAR_KILL_RANK="$rank"
  else
    target=$((2 + RANDOM % (STEPS - 4)))
    how="at step $target"
    train "$run" "$WORK/$TRIAL.log" POLAR_TRIAL="$TRIAL"
    victim=""
    while kill -0 "$LAUNCHER" 2>/dev/null; do
      if [ "$(current_step "$run")" -ge "$target" ]; then
        victim="$(worker_pid "$rank")"
        [ -n "$victim" ] && kill -9 "$victim" 2>/dev/null && break
      fi
      sleep 0.05
    done
    [ -n "$victim" ] || how="$how (not reached: the run ended first)"
  fi
  code=0
  wait "$LAUNCHER" || code=$?
  took=$(( $(date +%s) - start ))
  restarted=no; grep -q "resumed from" "$WORK/$TRIAL.log" && restarted=yes
  if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then
    verdict="HANG (killed by the ${TIMEOUT} s timeout)"; hangs=$((hangs + 1))
  elif [ "$code" -ne 0 ]; then
    verdict="FAILED (exit $code)"; failed=$((failed + 1))
  elif ! cmp -s "$REF/final/model.safetensors" "$run/final/model.safetensors"; then
    verdict="FAILED (final weights differ from the uninterrupted run)"; failed=$((failed + 1))
  elif ls -d "$run"/*.staging "$run"/*.tmp-* >/dev/null 2>&1; then
    verdict="FAILED (staging left behind)"; failed=$((failed + 1))
  else
    verdict="ok (weights identical)"; passed=$((passed + 1))
  fi
  echo "trial $i/$N: rank $rank killed $how; resumed: $restarted; $verdict; ${took} s"
  [ "${verdict:0:2}" = ok ] || tail -20 "$WORK/$TRIAL.log" | sed 's/^/    /'
  [ "${verdict:0:2}" = ok ] && rm -rf "$run"
done
echo "summary ($RDZV rendezvous): $passed/$N passed, $failed failed, $hangs hung"
[ "$passed" -eq "$N" ]
