"""Reference side of the LoRA cross-checks with peft (tests/model/test_lora_peft.cpp).

  lora_reference.py grads SPEC.json OUT.json
      SPEC: {"base": HF dir (polar's fp32 export of the base), "adapters": safetensors with polar's
             names (...q_proj.lora_A.weight, ...lora_B.weight, score.weight), "rank", "alpha",
             "targets": ["q_proj", ...], "sequences": [[id, ...], ...], "dtype": "float32" | "float64"}
      OUT:  {"peft": version, "rewards": [...], "grads": {polar name: flat list}} where the
            gradients are of the sum of the rewards, through peft's LoRA (get_peft_model with
            task_type SEQ_CLS, dropout 0) carrying the given A, B and head.
  lora_reference.py load SPEC.json OUT.json
      SPEC: {"base": HF dir, "adapter": peft adapter dir (polar export --lora-only),
             "sequences": [...]}
      OUT:  {"rewards": [...]} from PeftModel.from_pretrained(base, adapter).
One sequence at a time; "load" in float32.
"""
import json
import sys

import peft
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification


def peft_name(polar_name):
    if polar_name == "score.weight":
        return "base_model.model.score.modules_to_save.default.weight"
    return "base_model.model." + polar_name.replace(".weight", ".default.weight")


def grads(spec):
    dtype = getattr(torch, spec.get("dtype", "float32"))
    base = AutoModelForSequenceClassification.from_pretrained(spec["base"], dtype=dtype).to(dtype)
    config = LoraConfig(task_type="SEQ_CLS", r=spec["rank"], lora_alpha=spec["alpha"], lora_dropout=0.0,
                        target_modules=spec["targets"])
    model = get_peft_model(base, config).eval()
    params = dict(model.named_parameters())
    adapters = load_file(spec["adapters"])
    with torch.no_grad():
        for name, value in adapters.items():
            params[peft_name(name)].copy_(value)
    rewards = []
    total = 0
    for s in spec["sequences"]:
        r = model(input_ids=torch.tensor([s])).logits[0, 0]
        rewards.append(r.item())
        total = total + r
    total.backward()
    out = {name: params[peft_name(name)].grad.flatten().tolist() for name in adapters}
    return {"peft": peft.__version__, "rewards": rewards, "grads": out}


def load(spec):
    base = AutoModelForSequenceClassification.from_pretrained(spec["base"], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, spec["adapter"]).eval()
    with torch.no_grad():
        rewards = [model(input_ids=torch.tensor([s])).logits[0, 0].item() for s in spec["sequences"]]
    return {"peft": peft.__version__, "rewards": rewards}


def main():
    command, spec_path, out_path = sys.argv[1:4]
    spec = json.load(open(spec_path))
    out = {"grads": grads, "load": load}[command](spec)
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
