#!/usr/bin/env bash
# The whole sharded-save kill matrix: the suite's seven kills at 2 and 3 ranks, then chains
# through two kills, 4 -> 2 -> 3 Gloo ranks, at every save point on every rank that reaches it
# (15 chains; the suite runs one). Each is a kill -9 at POLAR_KILL_AT, a resume with --resume at
# another world size, the final weights bit-identical to a run that switched world size at the
# same steps, and no staging left. Prints the summary lines; exits non-zero on any failure.
#   scripts/zero_kill_matrix.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TESTS="$ROOT/build/tests/polar_tests"
[ -x "$TESTS" ] || { echo "zero_kill_matrix: $TESTS not built (run scripts/build.sh)" >&2; exit 1; }
LOG="$(mktemp /tmp/polar-zero-kill-XXXXXX.log)"
echo "zero_kill_matrix: log $LOG"
start=$(date +%s)
status=0
POLAR_ZERO_KILL_MATRIX=full OMP_NUM_THREADS=1 "$TESTS" --gtest_filter='ZeroKill.*' >"$LOG" 2>&1 ||
  status=$?
grep -E '^\[ zero \]|^\[  (PASSED|FAILED) |^\[       OK|^\[  FAILED' "$LOG" || true
echo "zero_kill_matrix: $(( $(date +%s) - start )) s, gtest exit $status"
exit "$status"
