#!/usr/bin/env bash
# Soak test of `polar serve` on 127.0.0.1 (bounded in time and in requests):
#   scripts/soak_serve.sh [--minutes 30] [--clients 8] [--batch 16] [--large-batch 256]
#                         [--max-requests 2000000] [--checkpoint DIR] [--device cpu]
# 8 steady clients, one client posting large batches and one posting malformed bodies, all
# authenticated with an API key (the server runs with POLAR_API_KEY). Prints a per-minute table
# (sequences/s, p50/p99 of the steady clients, server RSS read every second: highest and lowest
# per minute, errors) and checks the goals: growth of the highest RSS after the first minute
# < 5%, every minute's p99 within 1.5x of the first minute's, 0 errors other than the malformed
# client's 4xx, and a sample of the served rewards equal to `polar score` on the same records
# (|diff| <= 1e-4). Exit 0 when every goal holds.
# Without --checkpoint it builds the quickstart-shaped model of scripts/bench_serve.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
POLAR="${POLAR_BIN:-$ROOT/build/polar}"
WORK="${POLAR_SOAK_DIR:-runs/soak_serve}"
MINUTES=30 CLIENTS=8 BATCH=16 LARGE=256 MAX_REQUESTS=2000000 CKPT="" DEVICE=cpu INTERVAL=60
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --large-batch) LARGE="$2"; shift 2 ;;
    --max-requests) MAX_REQUESTS="$2"; shift 2 ;;
    --checkpoint) CKPT="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --interval) INTERVAL="$2"; shift 2 ;;  # seconds per row (60: one row a minute)
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$WORK"

. "$ROOT/scripts/lib.sh"
serve_fixture "$WORK"
python3 - "$WORK/data/raw/test.jsonl" "$WORK/records.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for line in open(sys.argv[1], encoding="utf-8"):
        r = json.loads(line)
        for o in (r["chosen"], r["rejected"]):
            f.write(json.dumps({"prompt": r["prompt"], "reference": r["reference"], "output": o}) + "\n")
PY

KEY="soak-$(date +%s)-$RANDOM"
PORT_FILE="$WORK/port"; rm -f "$PORT_FILE"
POLAR_API_KEY="$KEY" "$POLAR" serve --checkpoint "$CKPT" --host 127.0.0.1 --port 0 --port-file "$PORT_FILE" \
  --device "$DEVICE" >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do [ -s "$PORT_FILE" ] && break; sleep 0.1; done
[ -s "$PORT_FILE" ] || { cat "$WORK/serve.log"; exit 1; }
echo "soak: $MINUTES min, $CLIENTS x $BATCH + 1 x $LARGE sequences/request + 1 malformed client," \
  "server pid $SERVER, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
python3 tools/serve_soak.py --port "$(cat "$PORT_FILE")" --server-pid "$SERVER" --input "$WORK/records.jsonl" \
  --api-key "$KEY" --seconds "$(python3 -c "print($MINUTES * 60)")" --interval "$INTERVAL" \
  --max-requests "$MAX_REQUESTS" --clients "$CLIENTS" --batch "$BATCH" --large-batch "$LARGE" \
  --sample "$WORK/sample.jsonl" >"$WORK/soak.json"
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
kill -TERM $SERVER
wait $SERVER && SERVE_RC=0 || SERVE_RC=$?
trap - EXIT

# Rescore the sampled records offline.
[ -s "$WORK/sample.jsonl" ] || { echo "no sampled rewards (no request succeeded?)"; cat "$WORK/soak.json"; exit 1; }
"$POLAR" score --checkpoint "$CKPT" --input "$WORK/sample.jsonl" --output "$WORK/sample_scored.jsonl" \
  --device "$DEVICE" >"$WORK/score.log" 2>&1 || { cat "$WORK/score.log"; exit 1; }
python3 - "$WORK/soak.json" "$WORK/sample.jsonl" "$WORK/sample_scored.jsonl" "$SERVE_RC" "$LOAD_END" <<'PY'
import json, sys
soak = json.load(open(sys.argv[1]))
rows, t = soak["minutes"], soak["totals"]
served = [float(l) for l in open(sys.argv[2] + ".rewards")]
offline = [json.loads(l)["reward"] for l in open(sys.argv[3])]
wrong = sum(1 for a, b in zip(served, offline) if abs(a - b) > 1e-4) + abs(len(served) - len(offline))
print("| until s | sequences/s | p50 ms | p99 ms | large-batch p50 ms | RSS MiB (highest) | RSS MiB (lowest) | heap allocated MiB | heap free MiB | errors | malformed 4xx | malformed other |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['end_s']} | {r['sequences_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['large_p50_ms']} | "
          f"{r['rss_mib']} | {r['rss_low_mib']} | {r['heap_allocated_mib']} | {r['heap_free_mib']} | {r['errors']} | {r['malformed_4xx']} | {r['malformed_other']} |")
full = [r for r in rows if r["p99_ms"] is not None]
rss_growth = (rows[-1]["rss_mib"] / rows[0]["rss_mib"] - 1) if len(rows) > 1 else 0.0
p99_ratio = max(r["p99_ms"] for r in full) / full[0]["p99_ms"] if full else float("nan")
goals = {
    "growth of the highest RSS after the first row < 5%": rss_growth < 0.05,
    "p99 of every row within 1.5x of the first": p99_ratio <= 1.5,
    "0 errors besides the malformed client's 4xx": t["errors"] == 0 and t["malformed_other"] == 0,
    "0 wrong rewards in the rescored sample": wrong == 0 and len(served) > 0,
    "server exits 0 after SIGTERM": sys.argv[4] == "0",
}
print(f"\ntotals: {t['requests']} scoring requests, {t['sequences']} sequences in {t['wall_s']} s; "
      f"malformed: {t['malformed_4xx']} answered 4xx, {t['malformed_other']} otherwise; errors {t['errors']}"
      + (f" (first: {t['first_errors']})" if t["first_errors"] else ""))
print(f"RSS growth first -> last row: {rss_growth:+.1%}; worst p99 / first p99: {p99_ratio:.2f}; "
      f"rescored {len(served)} sampled rewards with polar score: {wrong} differ by > 1e-4; "
      f"load average at end {sys.argv[5]}")
for goal, ok in goals.items():
    print(f"  [{'ok' if ok else 'FAIL'}] {goal}")
sys.exit(0 if all(goals.values()) else 1)
PY
