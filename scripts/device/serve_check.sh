#!/usr/bin/env bash
# `polar serve` on a GPU machine with binaries built on the development machine (no build here).
# Carry: build/polar build/tests/polar_tests .deps/debs runs/bench_serve/run/final runs/bench_serve/data/raw
# (the last two from a local scripts/bench_serve.sh run, which builds them).
# Runs the ServeGpu tests (CUDA rewards vs `polar score` in fp32 and bf16; POLAR_TESTS names the
# test binary, default build/tests/polar_tests), then the load test
# (scripts/bench_serve.sh) on the CPU and on the GPU; logs go to $OUT.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prebuilt_env.sh"  # sets ROOT (cwd) and OUT
export POLAR_BIN="$ROOT/build/polar"
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; } | tee "$OUT/machine.txt"
ldd build/polar | grep "not found" && { echo "missing libraries"; exit 1; }
echo "=== serve gpu tests"
timeout 150 "${POLAR_TESTS:-build/tests/polar_tests}" --gtest_filter='ServeGpu*' 2>&1 | grep -vE "^\[20[0-9-]+ " | tee "$OUT/serve_gpu_tests.log" | tail -20
echo "=== load tests"
for run in "cpu fp32" "cuda fp32" "cuda bf16"; do
  set -- $run
  echo "--- $1 $2"
  timeout 120 scripts/bench_serve.sh --checkpoint runs/bench_serve/run/final --device "$1" --precision "$2" \
    --clients 16 --requests 300 --batch 32 --records 3000 2>&1 | tee "$OUT/bench_serve_$1_$2.log" | tail -4
done
