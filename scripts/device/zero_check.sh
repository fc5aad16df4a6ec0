#!/usr/bin/env bash
# ZeRO / optimizer offload / activation checkpointing on one GPU (H200 or H100), with binaries
# built on the development machine (as run_prebuilt.sh; carry build/polar build/tests/polar_tests
# .deps/debs). About 4 minutes:
#   1. ZeroGpu tests: NCCL's real reduce-scatter/all-gather under ShardedAdamW (~10 s)
#   2. POLAR-7B shape (InternLM2-7B, random init), ZeRO-2 + optimizer offload + checkpointing,
#      16K-token micro-batch: 1 warm-up + 1 timed step (~150 s: init, and the CPU AdamW update
#      of 7B parameters; needs ~105 GiB of host memory)
#   3. 1B shape: the default (8K-token micro-batches, one more step profiled: top kernels in
#      profile_1b.txt), 32K-token micro-batches, and checkpointing with 32K-token micro-batches
# Prints tokens/s, MFU against the measured bf16 matmul peak and against 989 TFLOP/s (H100/H200
# dense bf16 spec), peak memory (CUDA max allocated) and the memory plan's prediction; writes
# $OUT/zero.md and the raw JSON.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/prebuilt_env.sh"  # sets ROOT (cwd) and OUT
echo "=== ZeroGpu tests"
[ -n "${POLAR_ZERO_SKIP_TESTS:-}" ] || timeout 60 build/tests/polar_tests --gtest_filter='ZeroGpu*' 2>&1 | grep -vE "^\[20[0-9-]+ " | tail -8
bench() {  # NAME SECONDS CONFIG "BENCH FLAGS" [--set KEY=VALUE ...]
  local name=$1 budget=$2 config=$3 flags=$4; shift 4
  [[ "$name" =~ ${POLAR_ZERO_RUNS:-.} ]] || return 0  # POLAR_ZERO_RUNS: a regex of the runs to do
  echo "=== $name"
  build/polar plan --config "$config" --nproc 1 --gpu-memory 80 "$@" 2>&1 | tee "$OUT/plan_$name.txt" | tail -3
  # shellcheck disable=SC2086
  timeout "$budget" build/polar bench --config "$config" $flags "$@" --output "$OUT/bench_$name.json" 2>&1 |
    tee "$OUT/bench_$name.log" | grep -E "memory|tokens/s|MFU|rror|initialised|optimizer" | tail -8
}
# The offloaded 7B run keeps 16 bytes per parameter in host memory (~110 GiB, see polar plan);
# on a machine with less, half the layers keep the per-layer shapes (reported in the table).
avail_gib=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
layers=32
if (( avail_gib < 120 )); then layers=16; fi
echo "host memory available: ${avail_gib} GiB -> 7B shape with $layers layers"
bench 7b_offload ${POLAR_7B_BUDGET:-260} configs/polar7b_offload.json "--steps 2 --warmup 1 --seq-len 2048" \
  --set train.batch_groups=4 --set data.row_tokens=2048 --set model.num_layers=$layers
bench 1b_default 60 configs/gpu_1b.json "--steps 4 --warmup 2 --seq-len 1024 --profile /tmp/polar_trace_1b.json"
grep -A34 "profile (" "$OUT/bench_1b_default.log" | cut -c1-200 > "$OUT/profile_1b.txt"; head -24 "$OUT/profile_1b.txt"
# 44 groups (67,584 tokens) a step: two full 32K-token micro-batches, as the plan assumes.
bench 1b_32k 60 configs/gpu_1b.json "--steps 3 --warmup 1 --seq-len 1024" --set data.micro_batch_tokens=32768 \
  --set train.batch_groups=44
bench 1b_ckpt_32k 60 configs/gpu_1b.json "--steps 3 --warmup 1 --seq-len 1024" \
  --set train.activation_checkpointing=blocks --set data.micro_batch_tokens=32768 --set train.batch_groups=44
# Weight matrices in bf16 (train.param_dtype bf16, ZeRO-2): 1B at 32K-token micro-batches, and
# the 7B offload recipe at 32K-token micro-batches.
bench 1b_bf16w_32k 60 configs/gpu_1b.json "--steps 3 --warmup 1 --seq-len 1024" \
  --set data.micro_batch_tokens=32768 --set train.batch_groups=44 --set train.zero=2 \
  --set train.param_dtype=bf16
bench 7b_offload_bf16w_32k ${POLAR_7B_BUDGET:-260} configs/polar7b_offload.json \
  "--steps 2 --warmup 1 --seq-len 2048" --set train.batch_groups=10 --set data.row_tokens=2048 \
  --set data.micro_batch_tokens=32768 --set model.num_layers=$layers --set train.param_dtype=bf16
python3 - "$OUT" <<'PY'
import json, os, re, sys
out = sys.argv[1]
rows = ["| run | params | tokens/step | s/step | tokens/s | TFLOP/s | MFU (measured peak) | MFU (989 TFLOP/s) | peak GiB | plan GiB |",
        "|---|---|---|---|---|---|---|---|---|---|"]
for name in ("7b_offload", "7b_offload_bf16w_32k", "1b_default", "1b_32k", "1b_ckpt_32k", "1b_bf16w_32k"):
    p = os.path.join(out, f"bench_{name}.json")
    if not os.path.exists(p):
        if not os.path.exists(os.path.join(out, f"plan_{name}.txt")): continue  # not selected
        rows.append(f"| {name} | failed or timed out | | | | | | | | |"); continue
    r = json.load(open(p))
    plan = open(os.path.join(out, f"plan_{name}.txt")).read()
    m = re.search(r"predicted peak\s+([\d.]+) (GiB|MiB)", plan)
    plan_gib = (float(m.group(1)) / (1024 if m.group(2) == "MiB" else 1)) if m else float("nan")
    tf = r["achieved_gflops"] / 1e3
    rows.append(f"| {name} | {r['parameters']/1e9:.2f}B | {r['tokens_per_step']} | {r['ms_per_step']/1e3:.2f} | {r['tokens_per_s']:.0f} "
                f"| {tf:.1f} | {100*r['mfu']:.1f}% | {100*tf/989:.1f}% | {r['peak_memory_mb']/1024:.1f} | {plan_gib:.1f} |")
text = "\n".join(rows)
open(os.path.join(out, "zero.md"), "w").write(text + "\n")
print(text)
PY
