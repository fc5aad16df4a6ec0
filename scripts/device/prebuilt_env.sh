# Sourced by the prebuilt device scripts: unpacks the Debian packages carried in .deps/debs and
# points the loader at them, the machine's PyTorch libraries and CUDA. Sets ROOT (the checkout, and
# the working directory) and OUT (default out/device) for the script that sources it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/out/device}"
mkdir -p "$OUT"
DEPS="$ROOT/.deps/root"
rm -rf "$DEPS" && mkdir -p "$DEPS"
for f in "$ROOT"/.deps/debs/*.deb; do dpkg -x "$f" "$DEPS" 2>/dev/null || { m=$(ar t "$f" | grep '^data.tar'); ar p "$f" "$m" | tar -x --auto-compress -f - -C "$DEPS"; }; done
TORCH_LIB="$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB:/usr/local/cuda/lib64:$DEPS/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__)' | tee -a "$OUT/gpu.txt"
if ldd "$ROOT/build/polar" | grep "not found"; then echo "missing libraries"; exit 1; fi
