#!/usr/bin/env bash
# GPU check of shared-prefix groups with binaries built on the development machine (as
# run_prebuilt.sh; carry build/polar build/tests/polar_tests .deps/debs): the *Gpu* suites of
# the model and attention, then `polar bench` pairs/s with vs without sharing at K = 1, 2, 4, 8
# on POLAR-shaped lengths (configs/gpu_125m.json, bf16). About 3 minutes on an H100.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prebuilt_env.sh"  # sets ROOT (cwd) and OUT
echo "=== gpu tests"
timeout 120 build/tests/polar_tests --gtest_filter='RewardModelGpu*' 2>&1 |
  grep -vE "^\[20[0-9-]+ " | tee "$OUT/shared_prefix_tests.log" | tail -30
echo "=== bench: K, shared, pairs/s, tokens/step, ms/step, peak MiB"
for k in ${POLAR_BENCH_K:-1 2 4 8}; do
  for shared in false true; do
    timeout 60 build/polar bench --config configs/gpu_125m.json --lengths polar --negatives "$k" \
      --steps "${POLAR_BENCH_STEPS:-3}" --warmup 1 --set train.batch_groups=16 --set data.shared_prefix=$shared \
      --output "$OUT/bench_k${k}_$shared.json" >/dev/null 2>&1
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], round(r['pairs_per_s'],1), r['tokens_per_step'], round(r['ms_per_step'],1), round(r['peak_memory_mb']))" \
      "$OUT/bench_k${k}_$shared.json" "$k" "$shared" 2>&1 | tee -a "$OUT/shared_prefix_bench.txt"
  done
done
