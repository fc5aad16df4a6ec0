"""Reference side of the sampler cross-check (tests/sample/test_generate_transformers.cpp).

  generate_reference.py SPEC.json OUT.json
      SPEC: {"models": [model spec of tests/common/hf_reference.py with "head": "causal"],
             "prompts": [[id, ...], ...] (bos included), "max_new_tokens": N}
      OUT:  {"transformers": version, "results": {dir: {"greedy": [[id, ...], ...],
             "first_logits": [[float, ...], ...]}}}
Builds the tiny random causal LMs with hf_reference.build_one, then runs transformers'
generate(do_sample=False) one prompt at a time (no padding) and returns the new ids, and the
float32 logits of the first generated position.
"""
import json
import os
import sys

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from hf_reference import build_one  # noqa: E402


def main():
    spec_path, out_path = sys.argv[1:3]
    spec = json.load(open(spec_path))
    built, results = {}, {}
    for m in spec["models"]:
        model = build_one(m, built).eval()
        built[m["dir"]] = model
        greedy, first = [], []
        with torch.no_grad():
            for ids in spec["prompts"]:
                x = torch.tensor([ids])
                out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                     max_new_tokens=spec["max_new_tokens"], eos_token_id=m["eos"],
                                     pad_token_id=m["pad"], top_k=None, top_p=None, temperature=None)
                new = out[0, len(ids):].tolist()
                if m["eos"] in new:  # generate pads after eos; the sampler returns up to (without) it
                    new = new[:new.index(m["eos"])]
                greedy.append(new)
                first.append(model(input_ids=x).logits[0, -1].float().tolist())
        results[m["dir"]] = {"greedy": greedy, "first_logits": first}
    with open(out_path, "w") as f:
        json.dump({"transformers": transformers.__version__, "results": results}, f)


if __name__ == "__main__":
    main()
