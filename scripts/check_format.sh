#!/usr/bin/env bash
# Checks that every C++/CUDA file of the tree is formatted as .clang-format says (clang-format 14,
# Debian's `clang-format`). Lists the files that differ; exits 1 if any. `--fix` formats them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v clang-format >/dev/null || { echo "clang-format not found (apt-get install clang-format; scripts/setup.sh installs it)" >&2; exit 1; }
mapfile -t files < <(git ls-files -- 'src/*' 'include/*' 'tests/*' 'tools/*' 'scripts/*' |
                     grep -E '\.(cpp|h|hpp|cu|cuh)$' || true)
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  echo "format: formatted ${#files[@]} files"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
for f in "${bad[@]}"; do echo "not formatted: $f (scripts/check_format.sh --fix)"; done
echo "format: ${#files[@]} files, ${#bad[@]} not formatted"
[ ${#bad[@]} -eq 0 ]
