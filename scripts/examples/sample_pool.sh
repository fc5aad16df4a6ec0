#!/usr/bin/env bash
# The pipeline from a pool of models, on CPU: built-in texts -> a pool of small causal LMs
# (checkpoints of two tiny model lines, trained by build_causal_pool.py with transformers) ->
# `polar sample` (POLAR's scheme) -> `polar data pretrain --pairing paper` -> `polar train`.
# Re-running resumes `polar sample` where it stopped.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
POLAR="${POLAR:-$ROOT/build/polar}"
PY="$ROOT/.venv/bin/python"
OUT="${POLAR_EXAMPLE_OUT:-data/sample_pool}"
STEPS="${POLAR_EXAMPLE_LM_STEPS:-300}"
[ -x "$POLAR" ] || "$ROOT/scripts/build.sh"
t0=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }

step "1/6 built-in texts and a tokenizer"
python3 tools/gen_data.py --out "$OUT/raw" --pretrain-prompts 300 --finetune-prompts 10 --test-prompts 10
"$POLAR" tokenizer train --input "$OUT/raw/pretrain.jsonl" --vocab-size 600 --output "$OUT/tokenizer"

step "2/6 a pool of small causal LMs (checkpoints of one training run, and a second model line)"
[ -f "$OUT/pool/pool.json" ] || "$PY" scripts/examples/build_causal_pool.py --texts "$OUT/raw/pretrain.jsonl" \
  --tokenizer "$OUT/tokenizer" --out "$OUT/pool" --steps "$STEPS"

step "3/6 prompts: given ones and random 1..16-token prefixes of held-out texts"
"$PY" - "$OUT/raw/pretrain.jsonl" "$OUT/prompts.jsonl" "$OUT/corpus.txt" <<'PY'
import json, sys
seen, prompts, texts = set(), [], []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["prompt"] not in seen:
        seen.add(r["prompt"])
        (prompts if len(seen) % 2 else texts).append(r)
with open(sys.argv[2], "w") as f:
    for r in prompts[:40]:
        f.write(json.dumps({"prompt": r["prompt"] + "\n", "category": r.get("category", "")}) + "\n")
with open(sys.argv[3], "w") as f:
    for r in texts[:20]:
        f.write((r["prompt"] + " " + r["response"]).replace("\n", " ") + "\n")
PY

step "4/6 polar sample: POLAR's scheme (per prompt, policy A twice and policy B once)"
"$POLAR" sample --pool "$OUT/pool/pool.json" --prompts "$OUT/prompts.jsonl" --corpus "$OUT/corpus.txt" \
  --tokenizer "$OUT/tokenizer" --prefix-tokens 16 --corpus-category prefix \
  --threads "${POLAR_THREADS:-1}" --output "$OUT/trajectories.jsonl"

step "5/6 polar data pretrain --pairing paper: one group per prompt"
"$POLAR" data pretrain --trajectories "$OUT/trajectories.jsonl" --tokenizer "$OUT/tokenizer" \
  --output "$OUT/pretrain" --pairing paper --max-length 256 --max-response-length 64 --eval-fraction 0.1 \
  --overwrite

step "6/6 polar train: policy discrimination on them"
"$POLAR" train --config configs/tiny_pretrain.json --set data.train="$OUT/pretrain" \
  --set run.output_dir="$OUT/run" --set train.steps=60 --set train.batch_groups=16 --set eval.every=30 \
  --set run.checkpoint_every=60 --set run.log_every=10 --set train.threads="${POLAR_THREADS:-1}"
step "done; trajectories in $OUT/trajectories.jsonl, run in $OUT/run"
