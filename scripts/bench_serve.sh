#!/usr/bin/env bash
# Bounded load test of `polar serve` against `polar score` offline on the same inputs.
#   scripts/bench_serve.sh [--checkpoint DIR] [--clients 8] [--requests 200] [--batch 16] [--records N]
#                          [--api vllm|lmdeploy|sglang] [--device cpu|cuda] [--precision fp32|bf16]
#                          [--batch-tokens N]   (tokens per forward pass, for both; default 16384)
# Without --checkpoint it builds a quickstart-shaped model (4 layers, hidden 128, vocabulary
# 1000) from a little synthetic data with 2 training steps: throughput does not depend on the
# weights. Offline throughput = (N - 1) / (time to score N records - time to score 1 record), so
# process start and model loading are not counted; the server is measured after it listens.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
POLAR="$ROOT/build/polar"
WORK="${POLAR_BENCH_DIR:-runs/bench_serve}"
CKPT="" CLIENTS=8 REQUESTS=200 BATCH=16 RECORDS=2000 API=vllm DEVICE=cpu PRECISION=fp32 BATCH_TOKENS=16384
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) CKPT="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --records) RECORDS="$2"; shift 2 ;;
    --api) API="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --precision) PRECISION="$2"; shift 2 ;;
    --batch-tokens) BATCH_TOKENS="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$WORK"

. "$ROOT/scripts/lib.sh"
serve_fixture "$WORK"

# Scoring records: both outputs of each test preference line, RECORDS in all.
python3 - "$WORK/data/raw/test.jsonl" "$WORK/score.jsonl" "$RECORDS" <<'PY'
import json, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = []
for line in open(src, encoding="utf-8"):
    r = json.loads(line)
    for o in (r["chosen"], r["rejected"]):
        out.append({"prompt": r["prompt"], "reference": r["reference"], "output": o})
with open(dst, "w", encoding="utf-8") as f:
    for r in out[:n]:
        f.write(json.dumps(r) + "\n")
PY
head -1 "$WORK/score.jsonl" > "$WORK/score1.jsonl"
N=$(wc -l < "$WORK/score.jsonl")

# Wall time and CPU time (user + sys) of `polar score` on 1 record and on all N.
score_run() {  # INPUT OUTPUT -> "wall cpu"
  /usr/bin/time -f "%e %U %S" -o "$WORK/time.txt" "$POLAR" score --checkpoint "$CKPT" --input "$1" --output "$2" \
    --device "$DEVICE" --precision "$PRECISION" --batch-tokens "$BATCH_TOKENS" >/dev/null 2>&1
  awk '{print $1, $2 + $3}' "$WORK/time.txt"
}
read -r W1 C1 <<<"$(score_run "$WORK/score1.jsonl" "$WORK/out1.jsonl")"
read -r WN CN <<<"$(score_run "$WORK/score.jsonl" "$WORK/outN.jsonl")"
OFFLINE=$(python3 -c "print(round(($N - 1) / ($WN - $W1), 1))")
OFFLINE_CPU=$(python3 -c "print(round(($N - 1) / max($CN - $C1, 1e-9), 1))")
# CPU seconds used by a process so far (user + sys), from /proc.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

PORT_FILE="$WORK/port"; rm -f "$PORT_FILE"
SERVE_API=$API; [ "$API" = sglang ] && SERVE_API=vllm   # /classify is always on
"$POLAR" serve --checkpoint "$CKPT" --port 0 --port-file "$PORT_FILE" --device "$DEVICE" --precision "$PRECISION" \
  --batch-tokens "$BATCH_TOKENS" --api "$SERVE_API" >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$PORT_FILE" ] && break; sleep 0.1; done
[ -s "$PORT_FILE" ] || { cat "$WORK/serve.log"; exit 1; }
# A short warm-up, then the measured run.
python3 tools/serve_load.py --port "$(cat "$PORT_FILE")" --input "$WORK/score.jsonl" --server-type "$API" \
  --clients 2 --requests 8 --batch "$BATCH" >/dev/null
CPU0=$(proc_cpu $SERVER)
RESULT=$(python3 tools/serve_load.py --port "$(cat "$PORT_FILE")" --input "$WORK/score.jsonl" --server-type "$API" \
  --clients "$CLIENTS" --requests "$REQUESTS" --batch "$BATCH")
CPU1=$(proc_cpu $SERVER)
kill -TERM $SERVER
wait $SERVER && SERVE_RC=0 || SERVE_RC=$?
trap - EXIT
echo "$RESULT"
python3 - "$RESULT" "$OFFLINE" "$N" "$SERVE_RC" "$DEVICE $PRECISION, batch tokens $BATCH_TOKENS" "$OFFLINE_CPU" \
  "$CPU0" "$CPU1" <<'PY'
import json, sys
r, offline, n, rc, setup = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
offline_cpu, serve_cpu_s = float(sys.argv[6]), float(sys.argv[8]) - float(sys.argv[7])
served = r["ok_requests"] * r["batch"]
serve_cpu = served / max(serve_cpu_s, 1e-9)
print(f"offline polar score: {offline:.1f} sequences/s wall, {offline_cpu:.1f} sequences per CPU-second ({n} records, {setup})")
print(f"polar serve ({r['server_type']}, {r['clients']} clients x {r['batch']} sequences/request, {r['requests']} requests): "
      f"{r['sequences_per_s']:.1f} sequences/s wall, {serve_cpu:.1f} sequences per server CPU-second, "
      f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}")
print(f"serve / offline: {r['sequences_per_s'] / offline:.1%} wall, {serve_cpu / offline_cpu:.1%} per CPU-second; "
      f"server exit code after SIGTERM: {rc}")
PY
