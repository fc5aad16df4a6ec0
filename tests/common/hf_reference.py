"""Reference side of the Hugging Face cross-checks (tests/checkpoint/test_hf_transformers.cpp).

Builds tiny random Llama/Qwen2/Qwen3 models with transformers and scores token ids with saved ones,
so polar's import and export can be compared with transformers on the same ids.

  hf_reference.py build SPEC.json OUT.json
      SPEC: {"models": [{"dir", "arch": "llama"|"qwen2"|"qwen3", "head": "seqcls"|"causal", "seed",
             "vocab", "hidden", "layers", "heads", "kv_heads", "intermediate", "rope_theta",
             "rope_scaling" (linear factor or null), "rope" (rope_parameters beyond rope_theta,
             e.g. llama3's, or absent), "head_dim" (or absent), "tie", "bos", "eos", "pad",
             "tokenizer_from" (directory whose tokenizer.model is copied), "backbone_from"
             (a "causal" model takes the backbone of this already built seqcls model)}],
             "score": SCORE_SPEC or absent}
  hf_reference.py score SPEC.json OUT.json
      SPEC: {"models": [dir, ...], "sequences": [[id, ...], ...], "texts": [str, ...],
             "special_pieces": [str, ...], "template_texts": [str, ...]}
      OUT:  {"transformers": version, "results": {dir: {"architecture", "rewards", "batched",
             "tokenizer": {...} when "texts" is given}}}
  hf_reference.py tokenize SPEC.json OUT.json
      SPEC: {"models": [dir, ...] (polar exports), "texts": [str, ...] (POLAR-template strings)}
      OUT:  {"results": {dir: {"sentencepiece": ids per text (the sentencepiece package on each
             run between the special tokens of tokenizer_config.json, after bos),
             "sp_backend": ids from transformers' sentencepiece tokenizer (SentencePieceBackend,
             legacy, as InternLM2's slow tokenizer), "auto": ids from AutoTokenizer
             (LlamaTokenizer, tokenizers backend), "rewards": the model's reward of each text
             tokenised by the sentencepiece tokenizer, "auto_rewards": the same for "auto"}}}
Rewards are computed in float32, one sequence at a time ("rewards") and as one right-padded
batch ("batched", exercising the last-non-pad-token rule).
"""
import json
import shutil
import sys

import torch
import transformers
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          LlamaForSequenceClassification, LlamaTokenizer, Qwen2Config, Qwen2ForCausalLM,
                          Qwen2ForSequenceClassification, Qwen3Config, Qwen3ForCausalLM,
                          Qwen3ForSequenceClassification)

CLASSES = {
    ("llama", "seqcls"): (LlamaConfig, LlamaForSequenceClassification),
    ("llama", "causal"): (LlamaConfig, LlamaForCausalLM),
    ("qwen2", "seqcls"): (Qwen2Config, Qwen2ForSequenceClassification),
    ("qwen2", "causal"): (Qwen2Config, Qwen2ForCausalLM),
    ("qwen3", "seqcls"): (Qwen3Config, Qwen3ForSequenceClassification),
    ("qwen3", "causal"): (Qwen3Config, Qwen3ForCausalLM),
}


def build_one(spec, built):
    config_cls, model_cls = CLASSES[(spec["arch"], spec["head"])]
    kwargs = dict(vocab_size=spec["vocab"], hidden_size=spec["hidden"], num_hidden_layers=spec["layers"],
                  num_attention_heads=spec["heads"], num_key_value_heads=spec["kv_heads"],
                  intermediate_size=spec["intermediate"], max_position_embeddings=256, rms_norm_eps=1e-6,
                  tie_word_embeddings=spec.get("tie", False), bos_token_id=spec["bos"], eos_token_id=spec["eos"],
                  pad_token_id=spec["pad"], num_labels=1)
    rope = {"rope_type": "default", "rope_theta": spec.get("rope_theta", 10000.0)}
    if spec.get("rope_scaling"):
        rope = {"rope_type": "linear", "rope_theta": spec.get("rope_theta", 10000.0), "factor": spec["rope_scaling"]}
    if spec.get("rope"):
        rope = dict(spec["rope"], rope_theta=spec.get("rope_theta", 10000.0))
    kwargs["rope_parameters"] = rope
    if spec.get("head_dim"):
        kwargs["head_dim"] = spec["head_dim"]
    elif spec["arch"] == "qwen3":  # Qwen3Config's default is 128, not hidden / heads
        kwargs["head_dim"] = spec["hidden"] // spec["heads"]
    config = config_cls(**kwargs)
    torch.manual_seed(spec["seed"])
    model = model_cls(config).float()
    # Rewards far from zero and norms/biases away from their init, so a wrong mapping shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(1.0, 0.2)
            elif name.endswith(".bias"):
                p.normal_(0.0, 0.3)
            else:
                p.normal_(0.0, 0.15)
        if spec.get("backbone_from"):
            model.model.load_state_dict(built[spec["backbone_from"]].model.state_dict())
    model.save_pretrained(spec["dir"])
    if spec.get("tokenizer_from"):
        shutil.copy(spec["tokenizer_from"] + "/tokenizer.model", spec["dir"] + "/tokenizer.model")
    return model


def score(spec):
    results = {}
    seqs = spec["sequences"]
    for d in spec["models"]:
        model = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
        pad = model.config.pad_token_id
        with torch.no_grad():
            rewards = [model(input_ids=torch.tensor([s])).logits[0, 0].item() for s in seqs]
            width = max(len(s) for s in seqs)
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
            batched = model(input_ids=ids, attention_mask=mask).logits[:, 0].tolist()
        entry = {"architecture": type(model).__name__, "rewards": rewards, "batched": batched,
                 "pad_token_id": pad}
        if spec.get("texts"):
            # transformers 5 maps model_type qwen2 to its byte-level BPE tokenizer whatever
            # tokenizer_config.json says, so a sentencepiece Qwen2 export is opened as Llama's.
            qwen2 = model.config.model_type in ("qwen2", "qwen3")
            tok = (LlamaTokenizer if qwen2 else AutoTokenizer).from_pretrained(d)
            entry["tokenizer"] = {
                "class": type(tok).__name__, "bos_token_id": tok.bos_token_id, "pad_token_id": tok.pad_token_id,
                "special_ids": tok.convert_tokens_to_ids(spec["special_pieces"]),
                "encoded": [tok.encode(t, add_special_tokens=False) for t in spec["texts"]],
                "with_bos": tok.encode(spec["texts"][0])}
            if spec.get("template_texts"):
                # Whole POLAR-template strings, as a server receives them: ids and rewards.
                ids = [tok(t)["input_ids"] for t in spec["template_texts"]]
                with torch.no_grad():
                    rewards = [model(input_ids=torch.tensor([i])).logits[0, 0].item() for i in ids]
                entry["template"] = {"ids": ids, "rewards": rewards}
        results[d] = entry
    return {"transformers": transformers.__version__, "results": results}


def tokenize(spec):
    import re
    import sentencepiece as spm
    from transformers.tokenization_utils_sentencepiece import SentencePieceBackend
    results = {}
    for d in spec["models"]:
        cfg = json.load(open(d + "/tokenizer_config.json"))
        specials = sorted((t["content"] for t in cfg["added_tokens_decoder"].values()), key=len, reverse=True)
        sp = spm.SentencePieceProcessor(model_file=d + "/tokenizer.model")
        pattern = re.compile("(" + "|".join(re.escape(t) for t in specials) + ")")

        def by_runs(text):
            ids = [sp.piece_to_id(cfg["bos_token"])]
            for part in pattern.split(text):
                if part in specials:
                    ids.append(sp.piece_to_id(part))
                elif part:
                    ids += sp.encode(part)
            return ids

        named = {k: cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if cfg.get(k)}
        extra = [t for t in specials if t not in named.values()]
        backend = SentencePieceBackend(vocab_file=d + "/tokenizer.model", legacy=True,
                                       additional_special_tokens=extra, **named)
        bos = backend.convert_tokens_to_ids(cfg["bos_token"])
        auto = AutoTokenizer.from_pretrained(d)
        model = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
        entry = {"sentencepiece": [by_runs(t) for t in spec["texts"]],
                 "sp_backend": [[bos] + backend(t, add_special_tokens=False)["input_ids"] for t in spec["texts"]],
                 "auto": [auto(t)["input_ids"] for t in spec["texts"]], "auto_class": type(auto).__name__}
        with torch.no_grad():
            for key, ids_key in (("rewards", "sp_backend"), ("auto_rewards", "auto")):
                entry[key] = [model(input_ids=torch.tensor([i])).logits[0, 0].item() for i in entry[ids_key]]
        results[d] = entry
    return {"transformers": transformers.__version__, "results": results}


def main():
    command, spec_path, out_path = sys.argv[1:4]
    spec = json.load(open(spec_path))
    if command == "build":
        built = {}
        for m in spec["models"]:
            built[m["dir"]] = build_one(m, built)
        out = score(spec["score"]) if spec.get("score") else {}
    elif command == "score":
        out = score(spec)
    elif command == "tokenize":
        out = tokenize(spec)
    else:
        raise SystemExit(f"unknown command {command}")
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
