#!/usr/bin/env bash
# Every GPU check in one short lease, from binaries built on the development machine
# (carry build/polar build/tests/polar_tests .deps/debs; see run_prebuilt.sh). In order of
# importance, each step writing into $OUT as it goes so a cut-off run still reports:
#   1. every *Gpu* suite (fused kernels, varlen/shared-prefix attention, ZeRO over NCCL,
#      the sampler and the reward server on CUDA)
#   2. zero_check.sh's training steps: the POLAR-7B shape with ZeRO-2 + optimizer offload +
#      checkpointing, then 1B as configured (one step profiled), with 32K-token micro-batches,
#      and with checkpointing and 32K-token micro-batches
#   3. shared-prefix groups: bf16 pairs/s with vs without sharing (gpu_125m, POLAR lengths)
# About 9 minutes on an H200 (the last step is skipped when POLAR_CHECK_BUDGET, default 560 s,
# would be exceeded).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prebuilt_env.sh"  # sets ROOT (cwd) and OUT
echo "=== gpu tests"
timeout 150 build/tests/polar_tests --gtest_filter='*Gpu*' 2>&1 | grep -vE "^\[20[0-9-]+ " |
  tee "$OUT/gpu_tests.log" | grep -E "^\[  (FAILED|PASSED|SKIPPED|  OK) |Failure|error" | tail -60
echo "=== training steps (ZeRO, checkpointing, offload)"
POLAR_ZERO_SKIP_TESTS=1 bash "$ROOT/scripts/device/zero_check.sh"
# The shared-prefix table only when the lease has time left (POLAR_CHECK_BUDGET seconds in all).
if (( SECONDS > ${POLAR_CHECK_BUDGET:-560} - 120 )); then echo "=== shared prefix: skipped (time)"; exit 0; fi
echo "=== shared prefix: K shared pairs/s tokens/step ms/step peak_MiB"
for k in 1 4; do
  for shared in false true; do
    timeout 45 build/polar bench --config configs/gpu_125m.json --lengths polar --negatives "$k" \
      --steps 3 --warmup 1 --set train.batch_groups=16 --set data.shared_prefix=$shared \
      --output "$OUT/prefix_k${k}_$shared.json" >/dev/null 2>&1
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], sys.argv[3], round(r['pairs_per_s'],1), r['tokens_per_step'], round(r['ms_per_step'],1), round(r['peak_memory_mb']))" \
      "$OUT/prefix_k${k}_$shared.json" "$k" "$shared" 2>&1 | tee -a "$OUT/prefix_bench.txt"
  done
done
