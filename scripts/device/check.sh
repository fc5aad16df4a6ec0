#!/usr/bin/env bash
# The GPU check, in one run on a fresh H100/H200 machine (CUDA 13, the image's PyTorch, no
# network), within about 8 minutes:
#   1. unpack the carried Debian packages (.deps/debs, from scripts/device/fetch_debs.sh) into .deps/root
#   2. configure with POLAR_CUDA=ON against the image's LibTorch and those packages
#   3. build polar, polar_tests and polar_kernel_bench
#   4. ctest -L gpu (the *Gpu* suites; a skip there counts as a failure)
#   5. kernel microbenchmarks: fused vs unfused LibTorch, copy bandwidth, bf16 matmul peak
#   6. training-step benchmarks of configs/gpu_125m.json and configs/gpu_1b.json (polar bench)
# and writes $OUT/perf.md (summary table), $OUT/check.log, $OUT/ctest.log,
# $OUT/kernel_bench.md, $OUT/bench_125m.json, $OUT/bench_1b.json.
#
# Device run, from the repository root:  carry [".deps/debs"], command "scripts/device/check.sh"
# Environment: OUT (default out/device), POLAR_CHECK_BUDGET_S (whole run, default 470),
#   POLAR_CHECK_STEPS (comma list, default unpack,configure,build,test,kernels,train),
#   POLAR_CHECK_BUILD_DIR (default build-device), JOBS (default nproc).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/out/device}"
mkdir -p "$OUT"
BUDGET_S="${POLAR_CHECK_BUDGET_S:-470}"
STEPS=",${POLAR_CHECK_STEPS:-unpack,configure,build,test,kernels,train},"
BUILD="${POLAR_CHECK_BUILD_DIR:-$ROOT/build-device}"
JOBS="${JOBS:-$(nproc)}"
DEPS="$ROOT/.deps/root"
START=$(date +%s)

elapsed() { echo $(( $(date +%s) - START )); }
log() { printf '[check %4ss] %s\n' "$(elapsed)" "$*"; }
SUMMARY=()

# run_step NAME BUDGET_S COMMAND: runs COMMAND (a bash string, with -e and pipefail) under a
# timeout of min(BUDGET_S, time left in the whole budget); records the outcome for perf.md.
run_step() {
  local name=$1 budget=$2 cmd=$3
  case "$STEPS" in *",${name%%:*},"*) ;; *) log "skip $name (not in POLAR_CHECK_STEPS)"; return 0 ;; esac
  local left=$(( BUDGET_S - $(elapsed) ))
  (( budget > left )) && budget=$left
  if (( budget < 10 )); then
    log "SKIP $name: the time budget is spent"
    SUMMARY+=("| $name | skipped: out of time | 0 |")
    return 1
  fi
  log "=== $name (budget ${budget}s)"
  local t0 rc=0 status
  t0=$(date +%s)
  timeout --kill-after=10 "$budget" bash -eo pipefail -c "$cmd" || rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT after ${budget}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  log "=== $name: $status in $(( $(date +%s) - t0 ))s"
  SUMMARY+=("| $name | $status | $(( $(date +%s) - t0 )) |")
  return $rc
}

main() {
# ---- environment: carried packages first, the image's PyTorch and CUDA -----------------------
export DEPS BUILD OUT JOBS ROOT
export CMAKE_PREFIX_PATH="$DEPS/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export PKG_CONFIG_PATH="$DEPS/usr/lib/x86_64-linux-gnu/pkgconfig:$DEPS/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# Also lets the linker find the carried libraries' own dependencies (libfmt, libprotobuf-lite).
export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="/usr/local/cuda/bin:$PATH"
PYTHON="$(command -v python3)"
export PYTHON

log "device check in $ROOT, budget ${BUDGET_S}s, $JOBS jobs, output in $OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/[gpu] /' || true
log "python: $PYTHON; nvcc: $(command -v nvcc || echo none); cmake: $(cmake --version | head -1); ninja: $(command -v ninja || echo none)"

run_step unpack 60 '
  ls "$ROOT"/.deps/debs/*.deb >/dev/null 2>&1 || { echo "no .deps/debs/*.deb: run scripts/device/fetch_debs.sh on a machine with network and carry .deps/debs"; exit 1; }
  rm -rf "$DEPS" && mkdir -p "$DEPS"
  for f in "$ROOT"/.deps/debs/*.deb; do
    if command -v dpkg >/dev/null; then dpkg -x "$f" "$DEPS"
    else  # a .deb is an ar archive holding data.tar.{xz,zst,gz}
      member=$(ar t "$f" | grep "^data.tar")
      ar p "$f" "$member" | tar -x --auto-compress -f - -C "$DEPS" 2>/dev/null || ar p "$f" "$member" | tar -xJ -C "$DEPS"
    fi
  done
  # pkg-config files name /usr: point them at the unpacked tree.
  sed -i "s|^prefix=.*|prefix=$DEPS/usr|" "$DEPS"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc
  echo "unpacked $(ls "$ROOT"/.deps/debs/*.deb | wc -l) packages into $DEPS"' || true

CONFIGURED=1
run_step configure 120 '
  torch_prefix="$("$PYTHON" -c "import torch.utils; print(torch.utils.cmake_prefix_path)")"
  "$PYTHON" -c "import torch; print(\"[torch]\", torch.__version__, \"cuda\", torch.version.cuda, \"devices\", torch.cuda.device_count())"
  pkgconf=$(command -v pkg-config || echo "$DEPS/usr/bin/pkgconf")
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLAR_CUDA=ON \
    -DPOLAR_CUDA_ARCHITECTURES="80;90" -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" \
    -DTorch_DIR="$torch_prefix/Torch" -DCMAKE_PREFIX_PATH="$torch_prefix;$DEPS/usr" \
    -DPOLAR_FMT_INCLUDE="$DEPS/usr/include" -DPKG_CONFIG_EXECUTABLE="$pkgconf" 2>&1 | tail -25
  grep -q "POLAR_WITH_CUDA" "$BUILD/build.ninja" || { echo "configured without the CUDA kernels"; exit 1; }' && CONFIGURED=0

BUILT=1
if (( CONFIGURED == 0 )); then
  run_step build 330 'cmake --build "$BUILD" -j "$JOBS" --target polar polar_tests polar_kernel_bench 2>&1 |
    { grep -vE "^\[[0-9]+/[0-9]+\] Building" || true; } | tail -40' && BUILT=0
fi

if (( BUILT == 0 )); then
  run_step test 180 '
    cd "$BUILD"
    ctest -L gpu --output-on-failure --timeout 170 2>&1 | tee "$OUT/ctest.log" | tail -40
    if grep -q "(Skipped)\|Not Run" "$OUT/ctest.log"; then echo "GPU tests were SKIPPED on a GPU machine"; exit 1; fi
    grep -q "100% tests passed" "$OUT/ctest.log"' || true
  run_step kernels 120 '"$BUILD/polar_kernel_bench" --reps 20 --warmup 3 --out "$OUT/kernel_bench.md"' || true
  run_step train:125m 90 '"$BUILD/polar" bench --config "$ROOT/configs/gpu_125m.json" --steps 5 --warmup 2 \
      --seq-len 1024 --output "$OUT/bench_125m.json"' || true
  run_step train:1b 150 '"$BUILD/polar" bench --config "$ROOT/configs/gpu_1b.json" --steps 4 --warmup 2 \
      --seq-len 1024 --output "$OUT/bench_1b.json"' || true
fi

# ---- summary ----------------------------------------------------------------------------------
log "writing $OUT/perf.md"
{
  echo "# polar GPU check"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
  echo "- torch: $("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo unknown); nvcc: $(nvcc --version 2>/dev/null | tail -1)"
  echo
  echo "## Steps"
  echo
  echo "| step | outcome | seconds |"
  echo "|---|---|---|"
  printf '%s\n' "${SUMMARY[@]}"
  echo
  if [ -f "$OUT/ctest.log" ]; then
    echo "## ctest -L gpu"
    echo
    echo '```'
    grep -E "tests passed|Test +#|Failed|Skipped" "$OUT/ctest.log" | tail -20
    echo '```'
    echo
  fi
  "$PYTHON" - "$OUT" <<'PY' || echo "(no training benchmark results)"
import json, os, sys
out = sys.argv[1]
rows = []
for name in ("125m", "1b"):
    p = os.path.join(out, f"bench_{name}.json")
    if os.path.exists(p):
        r = json.load(open(p))
        rows.append((name, r))
if rows:
    print("## Training steps (polar bench, seq 1024, bf16 autocast, fused head/loss)\n")
    print("| config | params | tokens/step | ms/step | tokens/s | achieved TFLOP/s | bf16 matmul peak TFLOP/s | MFU | peak memory GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| gpu_{name} | {r.get('parameters', 0)/1e6:.0f}M | {r.get('tokens_per_step', 0)} | {r.get('ms_per_step', 0):.1f} "
              f"| {r.get('tokens_per_s', 0):.0f} | {r.get('achieved_gflops', 0)/1e3:.1f} | {r.get('peak_gflops', 0)/1e3:.1f} "
              f"| {100*r.get('mfu', 0):.1f}% | {r.get('peak_memory_mb', 0)/1024:.1f} |")
    print()
PY
  if [ -f "$OUT/kernel_bench.md" ]; then sed -E 's/^(#+) /\1# /' "$OUT/kernel_bench.md"; fi
} > "$OUT/perf.md.tmp" && mv "$OUT/perf.md.tmp" "$OUT/perf.md"
cat "$OUT/perf.md"
log "done"
# Fail the run when any step failed, so a caller sees it in the exit status.
if printf '%s\n' "${SUMMARY[@]}" | grep -qE "FAILED|TIMEOUT|skipped"; then return 1; fi
}

main "$@" 2>&1 | tee "$OUT/check.log"
exit "${PIPESTATUS[0]}"
