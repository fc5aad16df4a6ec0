#!/usr/bin/env bash
# Installs, idempotently and only what is missing, everything polar needs to build and test:
# Debian packages and the pinned torch wheel (its LibTorch) in a project-local venv (.venv/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(build-essential cmake ninja-build ccache python3 python3-venv pkg-config
  libsentencepiece-dev sentencepiece libpcre2-dev libutf8proc-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev zlib1g-dev libzstd-dev libcpp-httplib-dev libssl-dev clang-format)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

PYTHON="${POLAR_PYTHON:-python3}"
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating venv at $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# Pinned versions live in scripts/requirements.txt; pip is a no-op when they are already there.
# requirements-nodeps.txt: packages wanted only for a file they ship, installed without their
# dependencies.
if ! "$VENV/bin/python" - "$ROOT/scripts/requirements.txt" "$ROOT/scripts/requirements-nodeps.txt" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
for path in sys.argv[1:]:
    for line in open(path):
        line = line.split('#')[0].strip()
        if not line:
            continue
        name, want = line.split('==')
        assert version(name) == want, name
PY
then
  echo "[setup] installing Python packages from scripts/requirements*.txt into .venv"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/scripts/requirements.txt"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$ROOT/scripts/requirements-nodeps.txt"
fi
echo "[setup] ok: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)')"
