#!/usr/bin/env bash
# Creates (or reuses) the TRL venv for scripts/bench/trl_vs_polar.py: python3 -m venv + the exact pins
# of requirements-trl.txt from PyPI. Idempotent: a stamp holding the requirements' hash skips the
# install when nothing changed. Usage: scripts/bench/setup_trl_venv.sh [VENV_DIR] (default .venv-trl)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$ROOT/.venv-trl}"
REQ="$ROOT/scripts/bench/requirements-trl.txt"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -f "$VENV/.polar-bench-stamp" && "$(cat "$VENV/.polar-bench-stamp")" == "$want" ]]; then
  exit 0
fi
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet -r "$REQ"
"$VENV/bin/python" -c "import trl, transformers, torch; print('TRL venv:', trl.__version__, transformers.__version__, torch.__version__)"
echo "$want" > "$VENV/.polar-bench-stamp"
