#!/usr/bin/env bash
# Run HERE (a Debian bookworm machine with network): downloads the Debian packages that the GPU
# machine's image lacks (it has nvcc, CMake, ninja, a C++ compiler and PyTorch, but no dev
# packages and no network) into .deps/debs/. scripts/device/check.sh unpacks them there with
# `dpkg -x` into .deps/root; .deps/ is git-ignored, so name .deps/debs in the device run's `carry`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/.deps/debs"
PACKAGES=(
  libsentencepiece-dev libsentencepiece0 libprotobuf-lite32   # tokenizer
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9              # logging + fmt 9
  libcli11-dev nlohmann-json3-dev                             # CLI, JSON (header-only)
  libgtest-dev libgmock-dev googletest                        # tests
  pkgconf pkgconf-bin libpkgconf3                             # pkg-config, if the image has none
  libcpp-httplib-dev libcpp-httplib0.11 libssl3 libbrotli1    # HTTP (polar serve, polar sample)
  libzstd1                                                    # .jsonl.zst inputs
)
mkdir -p "$DEST"
cd "$DEST"
if ! apt-get download "${PACKAGES[@]}" 2>/dev/null; then
  echo "[fetch_debs] apt-get download failed; refreshing package lists"
  apt-get update -qq
  apt-get download "${PACKAGES[@]}"
fi
# Keep one version of each package (a re-run after an upgrade leaves the old file behind).
for p in "${PACKAGES[@]}"; do
  ls -1t "${p}"_*.deb 2>/dev/null | tail -n +2 | xargs -r rm -f
done
echo "[fetch_debs] $(ls -1 "$DEST"/*.deb | wc -l) packages, $(du -sh "$DEST" | cut -f1) in $DEST"
