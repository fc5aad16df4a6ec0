#!/usr/bin/env bash
# A long fuzz campaign over polar's untrusted inputs (preference and trajectory JSONL, training
# configs, checkpoints, tokenizer.json files, LoRA checkpoints, sampler pools, and request bodies
# of every `polar serve` endpoint): the test suite's seeded harness (tests/fuzz/, tests/serve/
# test_serve_fuzz.cpp) with many more cases. Prints one count line per input kind and a total;
# exits non-zero on any failure.
#   scripts/fuzz_campaign.sh [CASES_PER_KIND=2500] [CLI_CASES_PER_KIND=25] [SEED=1]
# CASES_PER_KIND run in process for each of 7 file kinds and 4x CASES_PER_KIND request bodies
# (over the four endpoints); CLI_CASES_PER_KIND through the `polar` binary; through a real
# `polar serve`, CASES_PER_KIND / 2 mutated valid bodies (checked against in-process rewards) and
# CASES_PER_KIND malformed requests.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CASES="${1:-2500}"
CLI_CASES="${2:-25}"
SEED="${3:-1}"
TESTS="$ROOT/build/tests/polar_tests"
[ -x "$TESTS" ] || { echo "fuzz_campaign: $TESTS not built (run scripts/build.sh)" >&2; exit 1; }
LOG="$(mktemp /tmp/polar-fuzz-XXXXXX.log)"
echo "fuzz_campaign: $CASES in-process and $CLI_CASES CLI cases per kind, seed $SEED (log: $LOG)"
start=$(date +%s)
status=0
POLAR_FUZZ_CASES="$CASES" POLAR_FUZZ_CLI_CASES="$CLI_CASES" POLAR_FUZZ_SEED="$SEED" \
  POLAR_SERVE_FUZZ_BODIES="$((CASES / 2))" POLAR_SERVE_FUZZ_CASES="$CASES" OMP_NUM_THREADS=1 \
  nice -n 10 "$TESTS" --gtest_filter='Fuzz*:ServeFuzz*' >"$LOG" 2>&1 || status=$?
grep '^fuzz\[' "$LOG" || true
grep '^fuzz\[' "$LOG" | awk '{
  for (i = 2; i < NF; i++) {
    if ($(i+1) == "cases,") c += $i; if ($(i+1) == "rejected") r += $i
    if ($(i+1) == "accepted,") a += $i; if ($(i+1) ~ /^failures/) f += $i
  }} END {
  printf "total: %d cases, %d rejected with a message naming the input, %d accepted, %d failures\n", c, r, a, f}'
echo "fuzz_campaign: $(( $(date +%s) - start )) s, gtest exit $status"
exit "$status"
