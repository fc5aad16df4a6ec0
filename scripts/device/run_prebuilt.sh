#!/usr/bin/env bash
# GPU check with binaries built on the development machine against the same LibTorch
# (torch 2.11.0+cu130 wheel): no build on the device, so the whole check fits a short lease.
# Carry: build/polar build/tests/polar_tests build/polar_kernel_bench .deps/debs
# Runs the *Gpu* test suites, the kernel microbenchmarks and the training-step benchmarks,
# and writes $OUT/perf.md plus the raw logs.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prebuilt_env.sh"  # sets ROOT (cwd) and OUT
echo "=== gpu tests"
timeout 240 build/tests/polar_tests --gtest_filter='*Gpu*' 2>&1 | grep -vE "^\[20[0-9-]+ " | tee "$OUT/gpu_tests.log" | tail -60
echo "=== kernel bench"
timeout 120 build/polar_kernel_bench --reps 20 --warmup 3 --out "$OUT/kernel_bench.md" 2>&1 | tail -40
echo "=== train bench"
for c in 125m 1b; do
  for attn in ${POLAR_BENCH_ATTENTION:-auto}; do
    timeout 120 build/polar bench --config configs/gpu_$c.json --steps 5 --warmup 2 --seq-len 1024 \
      --set train.attention=$attn --output "$OUT/bench_${c}_$attn.json" 2>&1 |
      grep -vE "^\[20[0-9-]+ |^ +\"|^[{}]" | tail -12
  done
done
