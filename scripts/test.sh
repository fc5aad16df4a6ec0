#!/usr/bin/env bash
# Set-up + build + the whole test suite (ctest). Ends with ctest's summary; non-zero on failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
start=$(date +%s)
"$ROOT/scripts/build.sh"
echo "[test] set-up + build took $(( $(date +%s) - start )) s"
BUILD_DIR="${POLAR_BUILD_DIR:-$ROOT/build}"
echo "[test] running ctest in $BUILD_DIR"
cd "$BUILD_DIR"
exec ctest --output-on-failure --timeout 900 -j "${POLAR_TEST_JOBS:-2}" "$@"
