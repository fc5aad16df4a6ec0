#!/usr/bin/env bash
# Data-parallel benchmark on CPU (Gloo): 1 rank vs 2 ranks (polar-run) on the tiny configs, with
# the same total number of cores. Reads the per-step timings the trainer writes to metrics.jsonl
# (step_s, comm_total_s, comm_exposed_s) and prints, per run, the mean step time split into
# compute (step time minus the communication the step waited for) and communication, and the
# fraction of the gradient all-reduce hidden behind backward.
#
#   scripts/bench_ddp.sh [--steps N] [--warmup K] [--threads T] [--configs "configs/a.json ..."]
#
# --threads: intra-op threads per rank (default: the machine's cores divided by the ranks, so
# that both runs use the whole machine; 1 compares the ranks' work at equal threads).
#
# Data: data/quickstart (POLAR_QUICKSTART_DATA) as scripts/quickstart.sh builds it; generated
# here when missing. Runs go to runs/bench_ddp (POLAR_BENCH_OUT).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STEPS=30
WARMUP=5
CONFIGS="configs/tiny_pretrain.json configs/tiny_finetune.json"
THREADS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --configs) CONFIGS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    *) echo "bench_ddp.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ "$WARMUP" -lt "$STEPS" ] || { echo "bench_ddp.sh: --warmup must be below --steps" >&2; exit 2; }

[ -x build/polar ] && [ -x build/polar-run ] || "$ROOT/scripts/build.sh"
POLAR="$ROOT/build/polar"
RUN="$ROOT/build/polar-run"
DATA="${POLAR_QUICKSTART_DATA:-data/quickstart}"
OUT="${POLAR_BENCH_OUT:-runs/bench_ddp}"
CORES="$(nproc)"
. "$ROOT/scripts/lib.sh"

if [ ! -f "$DATA/pretrain/manifest.json" ] || [ ! -f "$DATA/finetune/manifest.json" ]; then
  echo "[bench_ddp] building the synthetic data under $DATA"
  build_quickstart_data "$DATA"
fi

rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS=()
for config in $CONFIGS; do
  name="$(basename "$config" .json)"
  extra=(--set "train.steps=$STEPS" --set train.device=cpu --set eval.every=0 --set eval.max_groups=1
         --set run.checkpoint_every=0 --set run.log_every=10)
  case "$name" in
    *pretrain*) extra+=(--set "data.train=$DATA/pretrain") ;;
    *finetune*)
      # Fine-tuning starts from a pre-trained checkpoint; a fresh model of the same shape times
      # the same work.
      shape="$OUT/tiny_pretrain-1rank/final"
      [ -d "$shape" ] || { echo "[bench_ddp] skipping $name: run tiny_pretrain first"; continue; }
      extra+=(--set "data.train=$DATA/finetune" --set model.init_from= --set "model.shape_from=$shape"
              --set "model.tokenizer=$DATA/tokenizer") ;;
  esac
  for ranks in 1 2; do
    threads=$(( CORES / ranks )); [ "$threads" -ge 1 ] || threads=1
    [ "$THREADS" -eq 0 ] || threads=$THREADS
    dir="$OUT/$name-${ranks}rank"
    echo "[bench_ddp] $name: $ranks rank(s) x $threads thread(s), $STEPS steps"
    if [ "$ranks" -eq 1 ]; then
      "$POLAR" train --config "$config" "${extra[@]}" --set "train.threads=$threads" \
        --set "run.output_dir=$dir" >"$dir.log" 2>&1
    else
      "$RUN" --nproc-per-node "$ranks" --master-port 0 train --config "$config" "${extra[@]}" \
        --set "train.threads=$threads" --set "run.output_dir=$dir" >"$dir.log" 2>&1
    fi || { echo "[bench_ddp] $name with $ranks rank(s) failed; see $dir.log" >&2; exit 1; }
    RESULTS+=("$name $ranks $threads $dir/metrics.jsonl")
  done
done

python3 - "$WARMUP" "${RESULTS[@]}" <<'PY'
import json, sys
warmup = int(sys.argv[1])
rows = [r.split() for r in sys.argv[2:]]
print(f"\nMean per step after {warmup} warm-up steps (CPU, Gloo); compute = step - exposed communication")
print(f"{'config':<16}{'ranks':>6}{'thr':>5}{'step ms':>9}{'compute':>9}{'comm':>8}{'exposed':>9}"
      f"{'hidden':>8}{'tok/s':>9}{'speedup':>9}")
base = {}
for name, ranks, threads, path in rows:
    recs = [json.loads(l) for l in open(path) if l.strip()][warmup:]
    n = len(recs)
    step = sum(r["step_s"] for r in recs) / n
    total = sum(r["comm_total_s"] for r in recs) / n
    exposed = sum(r["comm_exposed_s"] for r in recs) / n
    tokens = sum(r["tokens"] for r in recs) / n
    hidden = f"{100 * (1 - exposed / total):.0f}%" if total > 0 else "-"
    tps = tokens / step
    base.setdefault(name, tps)
    print(f"{name:<16}{ranks:>6}{threads:>5}{1e3 * step:>9.1f}{1e3 * (step - exposed):>9.1f}{1e3 * total:>8.1f}"
          f"{1e3 * exposed:>9.1f}{hidden:>8}{tps:>9.0f}{tps / base[name]:>8.2f}x")
print("comm: the gradient all-reduce from its first bucket's launch to its last bucket's completion;")
print("exposed: the part of it after backward ended (finish_step waiting); hidden = 1 - exposed / comm.")
PY
