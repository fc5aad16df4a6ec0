"""Builds a pool of small causal LMs for scripts/examples/sample_pool.sh.

  build_causal_pool.py --texts TRAJ.jsonl --tokenizer DIR --out DIR [--steps 300] [--seed 0]

Trains one tiny LlamaForCausalLM (transformers, CPU) on "prompt\\nresponse" texts of the built-in
trajectories, tokenised with polar's sentencepiece tokenizer, and saves checkpoints of that one
run at a few steps (like checkpoints of one model line), plus a second, smaller Qwen2 model line.
Each checkpoint is a Hugging Face directory (config.json, model.safetensors, tokenizer.model)
that `polar sample` imports; DIR/pool.json lists them.
"""
import argparse
import json
import os
import random
import shutil

import sentencepiece as spm
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM


def load_texts(path, limit):
    texts = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if isinstance(r["prompt"], str) and isinstance(r["response"], str):
                texts.append(r["prompt"] + "\n" + r["response"])
    random.Random(0).shuffle(texts)
    return texts[:limit]


def batches(ids, seq_len, batch, rng):
    while True:
        rows = []
        for _ in range(batch):
            seq = ids[rng.randrange(len(ids))][: seq_len + 1]
            rows.append(seq + [0] * (seq_len + 1 - len(seq)))
        x = torch.tensor(rows)
        yield x, (x != 0).long()  # id 0 is <unk>, never produced by encoding: it marks padding


def train_line(name, model, ids, steps, save_at, out, tok_dir, rng, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    saved = []
    data = batches(ids, 96, 16, rng)
    for step in range(1, steps + 1):
        x, mask = next(data)
        labels = x.masked_fill(mask == 0, -100)
        loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in save_at:
            d = os.path.join(out, f"{name}-step{step}")
            model.save_pretrained(d)
            shutil.copy(os.path.join(tok_dir, "tokenizer.model"), os.path.join(d, "tokenizer.model"))
            saved.append((f"{name}-step{step}", d))
            print(f"{name}: step {step} loss {loss.item():.3f} -> {d}", flush=True)
    return saved


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.tokenizer, "tokenizer.model"))
    special = json.load(open(os.path.join(a.tokenizer, "polar_tokenizer.json")))
    bos, eos, pad = special["bos"], special["eos"], special["pad"]
    ids = [[bos] + sp.encode(t) + [eos] for t in load_texts(a.texts, 4000)]
    vocab = sp.get_piece_size()
    os.makedirs(a.out, exist_ok=True)
    common = dict(vocab_size=vocab, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, max_position_embeddings=512)
    llama = LlamaForCausalLM(LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=172, **common))
    qwen = Qwen2ForCausalLM(Qwen2Config(hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=1, intermediate_size=128, tie_word_embeddings=True,
                                        **common))
    rng = random.Random(a.seed)
    s = a.steps
    saved = train_line("llama", llama, ids, s, {s // 10, s // 3, s}, a.out, a.tokenizer, rng, 3e-3)
    saved += train_line("qwen2", qwen, ids, s // 2, {s // 6, s // 2}, a.out, a.tokenizer, rng, 3e-3)
    pool = {"sampling": {"temperature": 1.0, "top_p": 0.9, "top_k": 50, "max_new_tokens": 48, "stop": ["\n"]},
            "policies": [{"name": n, "kind": "base", "model_dir": os.path.relpath(d, a.out), "batch_size": 16}
                         for n, d in saved]}
    with open(os.path.join(a.out, "pool.json"), "w") as f:
        json.dump(pool, f, indent=2)
    print(f"wrote {os.path.join(a.out, 'pool.json')} with {len(saved)} policies")


if __name__ == "__main__":
    main()
