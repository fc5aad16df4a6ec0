#!/usr/bin/env bash
# Small clients' latency alone and beside one client that posts a large request back to back:
#   scripts/bench_serve_fairness.sh [--batch-tokens 16384] [--series 2] [--big 10000]
#                                   [--clients 8] [--requests 300] [--batch 16]
# One server (the model and records of scripts/bench_serve.sh, CPU fp32, --api vllm); then
# alone, beside, alone, beside, ..., alone runs of tools/serve_load.py, so every "beside" run is
# bracketed by two "alone" runs under the same load. Prints a table and, per beside run, its p99
# over the mean p99 of the two alone runs around it (the goal: at most 3x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
POLAR="${POLAR_BIN:-$ROOT/build/polar}"
WORK="${POLAR_BENCH_DIR:-runs/bench_serve}"
BATCH_TOKENS=16384 SERIES=2 BIG=10000 CLIENTS=8 REQUESTS=300 BATCH=16
while [ $# -gt 0 ]; do
  case "$1" in
    --batch-tokens) BATCH_TOKENS="$2"; shift 2 ;;
    --series) SERIES="$2"; shift 2 ;;
    --big) BIG="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ ! -s "$WORK/score.jsonl" ] || [ ! -d "$WORK/run/final" ]; then
  POLAR_BENCH_DIR="$WORK" "$ROOT/scripts/bench_serve.sh" >/dev/null
fi
PORT_FILE="$WORK/port_fair"; rm -f "$PORT_FILE"
"$POLAR" serve --checkpoint "$WORK/run/final" --host 127.0.0.1 --port 0 --port-file "$PORT_FILE" \
  --device cpu --precision fp32 --batch-tokens "$BATCH_TOKENS" --api vllm >"$WORK/serve_fair.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$PORT_FILE" ] && break; sleep 0.1; done
[ -s "$PORT_FILE" ] || { cat "$WORK/serve_fair.log"; exit 1; }
PORT="$(cat "$PORT_FILE")"
load_run() {  # KIND -> one JSON line, with the load average before the run
  local extra=()
  [ "$1" = beside ] && extra=(--big "$BIG" --timeout 600)
  local load; load="$(cut -d' ' -f1 /proc/loadavg)"
  python3 tools/serve_load.py --port "$PORT" --input "$WORK/score.jsonl" --clients "$CLIENTS" \
    --requests "$REQUESTS" --batch "$BATCH" "${extra[@]}" |
    python3 -c "import json,sys; r=json.load(sys.stdin); r['run']='$1'; r['load']=$load; print(json.dumps(r))"
}
RESULTS="$WORK/fairness_${BATCH_TOKENS}.jsonl"; : >"$RESULTS"
load_run alone >>"$RESULTS"
for _ in $(seq "$SERIES"); do
  load_run beside >>"$RESULTS"
  load_run alone >>"$RESULTS"
done
kill -TERM $SERVER; wait $SERVER || true; trap - EXIT
python3 - "$RESULTS" "$BATCH_TOKENS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"--batch-tokens {sys.argv[2]}: small clients alone and beside one large request")
print("| run | load | small sequences/s | p50 ms | p99 ms | p99 / alone p99 | large request |")
print("|---|---|---|---|---|---|---|")
worst = 0.0
for i, r in enumerate(rows):
    ratio, big = "", ""
    if r["run"] == "beside":
        alone = (rows[i - 1]["p99_ms"] + rows[i + 1]["p99_ms"]) / 2
        worst = max(worst, r["p99_ms"] / alone)
        ratio = f"{r['p99_ms'] / alone:.2f}x"
        lat = sorted(r["big_latency_s"])
        if lat:
            med = lat[len(lat) // 2]
            big = f"{len(lat)} answered, median {med:.1f} s ({r['big'] / med:.0f} seq/s)"
    print(f"| {r['run']} | {r['load']} | {r['sequences_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {ratio} | {big} |")
errors = sum(r.get("errors", 0) for r in rows)
print(f"\nworst beside p99 / alone p99: {worst:.2f}x (goal <= 3x); errors: {errors}")
sys.exit(0 if worst <= 3 and errors == 0 else 1)
PY
