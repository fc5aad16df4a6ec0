"""One timed run of TRL's RewardTrainer on pre-tokenized pairs (runs inside the TRL venv).

Reads the pairs written by trl_vs_polar.py ({"chosen_ids": [...], "rejected_ids": [...]} per
line, the exact ids polar trains on), builds a randomly initialised fp32 Llama reward model of the
given shape and trains --steps steps of --batch pairs. Step times are taken between consecutive
on_step_end callbacks (data loading, collation, forward, backward, clip and optimizer step all
inside); the first --warmup steps are not counted. Writes one JSON object to --output.
"""
import argparse
import json
import os
import tempfile
import time

import torch
from datasets import Dataset
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast, TrainerCallback
from trl import RewardConfig, RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference


class StepTimer(TrainerCallback):
    def __init__(self):
        self.marks = []
        self.cpu = []  # process CPU seconds (all threads) at the same points

    def on_train_begin(self, args, state, control, **kwargs):
        self.marks.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(time.perf_counter())
        self.cpu.append(time.process_time())


class CountingCollator(DataCollatorForPreference):
    """TRL's own collator; also records the padded and the real tokens of every batch."""

    def torch_call(self, examples):
        out = super().torch_call(examples)
        self.batches.append((out["input_ids"].numel(), int(out["attention_mask"].sum())))
        return out


def id_tokenizer(vocab_size, pad_id, bos_id, eos_id):
    # The data is already token ids; TRL only needs a tokenizer that knows the pad/eos ids.
    vocab = {f"<{i}>": i for i in range(vocab_size)}
    fast = Tokenizer(WordLevel(vocab=vocab, unk_token="<0>"))
    return PreTrainedTokenizerFast(tokenizer_object=fast, pad_token=f"<{pad_id}>", bos_token=f"<{bos_id}>",
                                   eos_token=f"<{eos_id}>", unk_token="<0>")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", required=True, help="JSONL of {chosen_ids, rejected_ids}")
    p.add_argument("--shape", required=True, help="JSON of the model shape (polar's resolved model section)")
    p.add_argument("--output", required=True)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gradient-checkpointing", action="store_true", help="TRL's default; off unless given")
    p.add_argument("--pad-id", type=int, default=3)
    p.add_argument("--bos-id", type=int, default=1)
    p.add_argument("--eos-id", type=int, default=2)
    return p.parse_args()


def build_model(shape, args):
    config = LlamaConfig(
        vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"], num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"], num_key_value_heads=shape["num_kv_heads"],
        intermediate_size=shape["intermediate_size"], max_position_embeddings=shape["max_position"],
        rope_theta=shape["rope_theta"], rms_norm_eps=shape["rms_eps"], tie_word_embeddings=shape["tie_embeddings"],
        initializer_range=shape["init_std"], pad_token_id=args.pad_id, bos_token_id=args.bos_id,
        eos_token_id=args.eos_id, num_labels=1, torch_dtype="float32")
    torch.manual_seed(args.seed)
    return LlamaForSequenceClassification(config).float()


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    with open(args.shape) as f:
        shape = json.load(f)
    with open(args.pairs) as f:
        rows = [json.loads(line) for line in f]
    model = build_model(shape, args)
    tokenizer = id_tokenizer(shape["vocab_size"], args.pad_id, args.bos_id, args.eos_id)
    collator = CountingCollator(pad_token_id=args.pad_id)
    collator.batches = []
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out_dir:
        config = RewardConfig(
            output_dir=out_dir, per_device_train_batch_size=args.batch, max_steps=args.steps, learning_rate=args.lr,
            lr_scheduler_type="cosine", warmup_steps=max(1, round(0.03 * args.steps)), weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.95,
            max_grad_norm=1.0, seed=args.seed, bf16=False, fp16=False, use_cpu=True, max_length=None,
            gradient_checkpointing=args.gradient_checkpointing, save_strategy="no", report_to="none",
            logging_steps=10, dataloader_num_workers=0, disable_tqdm=True)
        trainer = RewardTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                                processing_class=tokenizer, data_collator=collator, callbacks=[timer])
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    step_s = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
    timed = step_s[args.warmup:]
    batches = collator.batches[:len(step_s)]
    result = {
        "side": "trl", "gradient_checkpointing": args.gradient_checkpointing, "steps": len(step_s),
        "timed_steps": len(timed), "pairs_per_step": args.batch, "step_s": step_s,
        "pairs_per_s": args.batch * len(timed) / sum(timed),
        "pairs_per_cpu_s": args.batch * len(timed) / (timer.cpu[-1] - timer.cpu[args.warmup]),
        "computed_tokens_per_step": sum(b[0] for b in batches) / len(batches),
        "real_tokens_per_step": sum(b[1] for b in batches) / len(batches),
        "parameters": sum(p.numel() for p in model.parameters()),
        "checkpointing_active": bool(getattr(model, "is_gradient_checkpointing", False)),
        "last_logged_loss": losses[-1] if losses else None,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
