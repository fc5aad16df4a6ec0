# Shell functions the benchmark and experiment scripts share; source it with
#   . "$ROOT/scripts/lib.sh"
# after setting POLAR (the polar binary) and changing to the repository root.

# build_quickstart_data DATA: the quickstart's synthetic data under DATA (raw/, tokenizer/,
# pretrain/ with a 5% eval split, finetune/), as scripts/quickstart.sh builds it with seed 0.
build_quickstart_data() {
  local data="$1"
  [ -f "$data/raw/test.jsonl" ] || python3 tools/gen_data.py --out "$data/raw" --seed 0
  "$POLAR" tokenizer train --input "$data/raw/pretrain.jsonl" "$data/raw/finetune.jsonl" \
    --vocab-size 1000 --output "$data/tokenizer"
  "$POLAR" data pretrain --trajectories "$data/raw/pretrain.jsonl" --tokenizer "$data/tokenizer" \
    --output "$data/pretrain" --negatives 1 --seed 0 --max-length 512 --max-response-length 160 \
    --eval-fraction 0.05 --template finetune --overwrite
  "$POLAR" data preference --input "$data/raw/finetune.jsonl" --tokenizer "$data/tokenizer" \
    --output "$data/finetune" --max-length 512 --max-response-length 160 --overwrite
}

# serve_test_data WORK: generated data for serving benchmarks under WORK/data/raw (its
# test.jsonl gives the scored texts).
serve_test_data() {
  [ -f "$1/data/raw/test.jsonl" ] || python3 tools/gen_data.py --out "$1/data/raw" \
    --pretrain-prompts 200 --finetune-prompts 50 --test-prompts 400 >/dev/null
}

# tiny_serve_checkpoint WORK: a small trained checkpoint for serving benchmarks at WORK/run/final
# (2 pre-training steps on serve_test_data; its rewards only need to be deterministic).
tiny_serve_checkpoint() {
  local work="$1"
  serve_test_data "$work"
  [ -d "$work/run/final" ] && return 0
  "$POLAR" tokenizer train --input "$work/data/raw/pretrain.jsonl" --vocab-size 1000 \
    --output "$work/data/tokenizer" >/dev/null
  "$POLAR" data pretrain --trajectories "$work/data/raw/pretrain.jsonl" \
    --tokenizer "$work/data/tokenizer" --output "$work/data/pretrain" --negatives 1 \
    --max-length 512 --max-response-length 160 --template finetune --overwrite >/dev/null
  "$POLAR" train --config configs/tiny_pretrain.json --set data.train="$work/data/pretrain" \
    --set run.output_dir="$work/run" --set train.steps=2 --set eval.every=0 \
    --set run.checkpoint_every=0 >/dev/null
}

# serve_fixture WORK: serve_test_data, and CKPT, when empty, set to tiny_serve_checkpoint's.
serve_fixture() {
  serve_test_data "$1"
  if [ -z "${CKPT:-}" ]; then
    tiny_serve_checkpoint "$1"
    CKPT="$1/run/final"
  fi
}
