#!/usr/bin/env bash
# Builds the torch-free safetensors parser with the corruption campaign under AddressSanitizer and
# UndefinedBehaviorSanitizer (no CMake, no torch) and runs it: every mutated image must parse to a
# valid tiling or raise polar::Error; any out-of-bounds read or UB aborts the run.
# Usage: scripts/asan_safetensors.sh [n_mutations_per_seed (default 12000)] [seeds (default "1 2")]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-12000}"
SEEDS="${2:-1 2}"
WORK="$(mktemp -d /tmp/polar-asan-safetensors.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/main.cpp" <<'CPP'
#include <cstdio>
#include <cstdlib>
#include <string>
#include "safetensors_corruption.h"
int main(int argc, char** argv) {
  const uint64_t seed = std::strtoull(argv[1], nullptr, 10), n = std::strtoull(argv[2], nullptr, 10);
  const auto r = polar::io::testing::run_corruption_campaign(seed, n);
  std::printf("seed %llu: %llu mutations, %llu accepted, %llu rejected, %zu failures\n",
              (unsigned long long)seed, (unsigned long long)r.mutations, (unsigned long long)r.accepted,
              (unsigned long long)r.rejected, r.failures.size());
  std::string kinds, errors;
  for (const auto& [k, c] : r.by_kind) kinds += " " + k + "=" + std::to_string(c);
  for (const auto& [k, c] : r.by_error) errors += " " + k + "=" + std::to_string(c);
  std::printf("  kinds:%s\n  errors:%s\n", kinds.c_str(), errors.c_str());
  for (size_t i = 0; i < r.failures.size() && i < 20; ++i) std::printf("  FAIL %s\n", r.failures[i].c_str());
  return r.failures.empty() && r.mutations == n ? 0 : 1;
}
CPP

echo "[asan] compiling (g++ -std=c++17 -fsanitize=address,undefined -g -O1)"
g++ -std=c++17 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1 \
  -I"$ROOT/include" -I"$ROOT/tests/io" \
  "$ROOT/src/io/safetensors_parse.cpp" "$ROOT/tests/io/safetensors_corruption.cpp" "$WORK/main.cpp" \
  -o "$WORK/campaign"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
total=0
for seed in $SEEDS; do
  "$WORK/campaign" "$seed" "$N"
  total=$((total + N))
done
echo "[asan] ok: $total mutations, no sanitizer report, no failure"
