"""--check: validates the files written to an output directory from their text alone."""

import json
import os

from . import tasks


class CheckError(Exception):
    pass


def _require(cond, message):
    if not cond:
        raise CheckError(message)


def _read_jsonl(path, fields):
    records = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CheckError(f"{where}: not a UTF-8 JSON line ({e})")
            _require(isinstance(obj, dict) and sorted(obj) == sorted(fields),
                     f"{where}: expected exactly the fields {list(fields)}")
            for key in fields:
                _require(isinstance(obj[key], str) and obj[key].strip(),
                         f"{where}: field '{key}' must be a non-empty string")
            records.append(obj)
    return records


def validate(out_dir, n_pretrain, n_finetune, n_test):
    """Raises CheckError naming the file and line of the first broken invariant."""
    path = lambda name: os.path.join(out_dir, name)
    with open(path("policies.json"), encoding="utf-8") as f:
        pool = json.load(f)
    names = [p["name"] for p in pool]
    in_pool = sorted(p["name"] for p in pool if not p["held_out"])
    _require(len(set(names)) == len(names), "policies.json: duplicate policy names")
    _require(len(in_pool) >= 16, f"policies.json: {len(in_pool)} pre-training policies, need >= 16")
    _require(len(names) - len(in_pool) >= 4, "policies.json: need >= 4 held-out policies")
    _require(len({p["family"] for p in pool}) >= 3, "policies.json: need >= 3 families")

    pretrain = _read_jsonl(path("pretrain.jsonl"), ("prompt", "policy", "response", "category"))
    _require(len(pretrain) == n_pretrain * len(in_pool) * 2,
             f"pretrain.jsonl: {len(pretrain)} lines, expected {n_pretrain} x {len(in_pool)} x 2")
    by_prompt = {}
    for number, r in enumerate(pretrain, start=1):
        _require(r["policy"] in in_pool, f"pretrain.jsonl:{number}: policy '{r['policy']}' is not "
                 f"a pre-training policy")
        category, _ = tasks.parse_prompt(r["prompt"])
        _require(category == r["category"], f"pretrain.jsonl:{number}: category mismatch")
        by_prompt.setdefault(r["prompt"], []).append(r["policy"])
    _require(len(by_prompt) == n_pretrain, f"pretrain.jsonl: {len(by_prompt)} prompts, "
             f"expected {n_pretrain}")
    for prompt, policies in sorted(by_prompt.items()):
        _require(len(policies) >= 2 and len(set(policies)) >= 2,
                 f"pretrain.jsonl: prompt {prompt!r} lacks 2 trajectories from 2 policies")
        _require(sorted(policies) == sorted(in_pool * 2),
                 f"pretrain.jsonl: prompt {prompt!r} is not answered twice by every policy")

    prompt_sets = {"pretrain.jsonl": set(by_prompt)}
    # Content slices may give the chosen the reference's own grade (both correct); the rest rank
    # strictly.
    content = ("test_content_same_family.jsonl", "test_content_other_family_same_skill.jsonl",
               "test_content_other_family_other_skill.jsonl")
    for name, n in (("finetune.jsonl", n_finetune), ("test.jsonl", n_test),
                    ("test_other_family.jsonl", n_test)) + tuple((c, n_test) for c in content):
        records = _read_jsonl(path(name), ("prompt", "reference", "chosen", "rejected", "category"))
        _require(len(records) == n, f"{name}: {len(records)} lines, expected {n}")
        prompts = [r["prompt"] for r in records]
        _require(len(set(prompts)) == len(prompts), f"{name}: repeated prompts")
        for number, r in enumerate(records, start=1):
            category, _ = tasks.parse_prompt(r["prompt"])
            _require(category == r["category"], f"{name}:{number}: category mismatch")
            ref, cho, rej = (tasks.grade(r["prompt"], r[k]) for k in ("reference", "chosen", "rejected"))
            ranked = ref >= cho > rej if name in content else ref > cho > rej
            _require(ranked, f"{name}:{number}: ranking not strict: {ref} {cho} {rej}")
        cats = {r["category"] for r in records}
        _require(n < len(tasks.CATEGORIES) or cats == set(tasks.CATEGORIES),
                 f"{name}: categories {sorted(cats)}, expected all of {list(tasks.CATEGORIES)}")
        prompt_sets[name] = set(prompts)
    files = sorted(prompt_sets)
    for i, a in enumerate(files):
        for b in files[i + 1:]:
            shared = sorted(prompt_sets[a] & prompt_sets[b])
            _require(not shared, f"{a} and {b} share {len(shared)} prompts, e.g. {shared[:1]}")

    fields = ("prompt", "reference", "chosen", "rejected", "category")
    test = _read_jsonl(path("test.jsonl"), fields)
    same = _read_jsonl(path("test_same_family.jsonl"), fields)
    test_keys = {json.dumps(r, sort_keys=True) for r in test}
    for number, r in enumerate(same, start=1):
        _require(json.dumps(r, sort_keys=True) in test_keys,
                 f"test_same_family.jsonl:{number}: not a line of test.jsonl")
    _require(len(same) < len(test) or len(test) < 10,
             "test_same_family.jsonl: every test pair is same-family; the split says nothing")

    score = _read_jsonl(path("score.jsonl"), ("prompt", "reference", "output"))
    _require(len(score) >= 3, "score.jsonl: expected a few lines")


def same_bytes(dir_a, dir_b, names):
    for name in names:
        with open(os.path.join(dir_a, name), "rb") as fa, open(os.path.join(dir_b, name), "rb") as fb:
            _require(fa.read() == fb.read(), f"{name}: differs between two runs with the same seed")
