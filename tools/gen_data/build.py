"""Builds the five output files in memory (as lists of JSON-ready dicts) and measures the test set."""

import random
import re
from itertools import zip_longest

from . import tasks
from .pool import build_pool
from .respond import Responder

SAMPLES_PER_PREF_PROMPT = 12 # policies asked per fine-tune/test prompt before ranking


def _problems(rng, n, used, what, category=None):
    """n new problems (of `category`, else round-robin) whose prompt text is not in `used`."""
    out, attempts = [], 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise SystemExit(f"gen_data: ran out of distinct {what} prompts after {len(out)}; "
                             f"ask for fewer")
        problem = tasks.sample_problem(
            rng, category or tasks.CATEGORIES[len(out) % len(tasks.CATEGORIES)])
        prompt = tasks.render_prompt(problem)
        if prompt not in used:
            used.add(prompt)
            out.append((problem, prompt))
    return out


def _family(policy_name):
    return policy_name.rsplit("-c", 1)[0]


def rank_triple(rng, prompt, responses, own_family=True):
    """(reference, chosen, rejected) with key(ref) > key(chosen) > key(rej) strictly, else None.

    responses: [(policy_name, text)]. The reference is drawn from the best level. As in POLAR,
    a response is better the closer its policy is to the reference's: the chosen is the best-graded
    response below the reference that comes from the reference's own family (same model line),
    else from the second level; the rejected is graded lower and comes from another family, and
    when the chosen is correct it is an incorrect one whose quality is nearest the chosen's (so
    surface tidiness alone does not separate them).
    own_family=False builds the other-family slice: the chosen is the best-graded response below
    the reference from ANOTHER family than the reference's, the rejected (lower, quality-matched)
    comes from a family other than the chosen's, so matching the reference's family is no answer.
    """
    graded, seen = [], set()
    for name, text in responses:
        if text not in seen:
            seen.add(text)
            graded.append((tasks.grade(prompt, text), name, text))
    levels = sorted({key for key, _, _ in graded}, reverse=True)
    if len(levels) < 3:
        return None
    at = lambda key: [(n, t) for k, n, t in graded if k == key]
    reference = rng.choice(at(levels[0]))
    family = _family(reference[0])
    if own_family:
        kin = sorted({k for k, n, _ in graded if k < levels[0] and _family(n) == family}, reverse=True)
        chosen_key = kin[0] if kin else levels[1]
        pool = [(n, t) for n, t in at(chosen_key) if _family(n) == family] or at(chosen_key)
    else:
        others = sorted({k for k, n, _ in graded if k < levels[0] and _family(n) != family}, reverse=True)
        if not others:
            return None
        chosen_key = others[0]
        pool = [(n, t) for n, t in at(chosen_key) if _family(n) != family]
    chosen = rng.choice(pool)
    if not own_family:
        family = _family(chosen[0])  # the rejected must come from a family other than the chosen's
    below = [key for key in levels if key < chosen_key]
    if not below:
        return None
    if chosen_key[0]:
        below = [key for key in below if not key[0]] or below
    strangers = [key for key in below if any(_family(n) != family for n, _ in at(key))]
    below = strangers or below
    # Match the rejected's quality to the chosen's, so tidiness alone does not separate them.
    gap = min(abs(key[1] - chosen_key[1]) for key in below)
    rejected_pool = [r for key in below if abs(key[1] - chosen_key[1]) == gap for r in at(key)]
    rejected = rng.choice([r for r in rejected_pool if _family(r[0]) != family] or rejected_pool)
    return reference, chosen, rejected


def _preferences(seed, split, problems, candidates, responder, n, own_family=True):
    rng = random.Random(f"{seed}|{split}")
    records, meta = [], []
    for problem, prompt in problems:
        if len(records) == n:
            break
        asked = rng.sample(candidates, SAMPLES_PER_PREF_PROMPT)
        responses = [(p.name, responder.respond(rng, p, problem)) for p in asked]
        triple = rank_triple(rng, prompt, responses, own_family)
        if triple is None:
            continue
        (ref_p, ref), (cho_p, cho), (rej_p, rej) = triple
        records.append({"prompt": prompt, "reference": ref, "chosen": cho, "rejected": rej,
                        "category": problem[0]})
        meta.append((ref_p, cho_p, rej_p))
    return records, meta


def generate(seed, n_pretrain, n_finetune, n_test, style_mix=0.0):
    """Returns {file name: list of dicts (or the policies list)} plus per-test-pair policy names;
    style_mix: share of samples in a random family's surface style (respond.Responder)."""
    pool = build_pool()
    in_pool = [p for p in pool if not p.held_out]
    responder = Responder(seed, style_mix)
    used = set()
    prng = random.Random(f"{seed}|problems")
    pre_problems = _problems(prng, n_pretrain, used, "pretrain")

    rng = random.Random(f"{seed}|pretrain")
    pretrain = []
    for problem, prompt in pre_problems:
        for policy in in_pool:
            for _ in range(2):
                pretrain.append({"prompt": prompt, "policy": policy.name,
                                 "response": responder.respond(rng, policy, problem),
                                 "category": problem[0]})

    # Preference prompts are drawn per category, in batches, until each category's share of the
    # split survives the strict-ranking filter; the categories are then interleaved.
    files = {}
    splits = (("finetune", n_finetune, in_pool, True), ("test", n_test, pool, True),
              ("test_other_family", n_test, pool, False))
    for split, n, candidates, own_family in splits:
        per_category = []
        for index, category in enumerate(tasks.CATEGORIES):
            quota = n // len(tasks.CATEGORIES) + (index < n % len(tasks.CATEGORIES))
            records, meta = [], []
            while len(records) < quota:
                batch = _problems(prng, max(8, (quota - len(records)) * 3 // 2), used, split, category)
                more, more_meta = _preferences(seed, f"{split}|{category}|{len(records)}", batch,
                                               candidates, responder, quota - len(records), own_family)
                records += more
                meta += more_meta
            per_category.append(list(zip(records, meta)))
        mixed = [pair for group in zip_longest(*per_category) for pair in group if pair]
        files[split] = ([r for r, _ in mixed], [m for _, m in mixed])

    score = _score_demo(seed, pool, responder, used)
    test, test_meta = files["test"]
    same = [r for r, names in zip(test, test_meta) if _family(names[0]) == _family(names[1])]
    other, other_meta = files["test_other_family"]
    contents = {"pretrain.jsonl": pretrain, "finetune.jsonl": files["finetune"][0],
                "test.jsonl": test, "test_same_family.jsonl": same,
                "test_other_family.jsonl": other, "score.jsonl": score,
                "policies.json": [p.to_json() for p in pool]}
    meta = {"test": test_meta, "test_other_family": other_meta}
    # Drawn last, from their own prompts, so the files above do not depend on them.
    for name, relation in CONTENT_SLICES.items():
        records, names = _content_slice(seed, name, relation, prng, used, pool, responder, n_test)
        contents[f"{name}.jsonl"] = records
        meta[name] = names
    return contents, meta


# The content slices: chosen and rejected both differ from the reference's policy, and which of
# them comes closer to the reference's family cannot decide the pair.
#   test_content_same_family: both from the reference's family, different checkpoints (style is
#     shared; only what they get right differs, as between checkpoints of one model line).
#   test_content_other_family_same_skill: two other families, the same checkpoint level.
#   test_content_other_family_other_skill: two other families, different checkpoint levels.
def _same_family(ref, cho, rej):
    return _family(cho.name) == _family(rej.name) == _family(ref.name) and \
        cho.checkpoint != rej.checkpoint


def _other_family(same_skill):
    def relation(ref, cho, rej):
        families = {_family(ref.name), _family(cho.name), _family(rej.name)}
        return len(families) == 3 and (cho.checkpoint == rej.checkpoint) == same_skill
    return relation


CONTENT_SLICES = {"test_content_same_family": _same_family,
                  "test_content_other_family_same_skill": _other_family(True),
                  "test_content_other_family_other_skill": _other_family(False)}


def _content_slice(seed, name, relation, prng, used, pool, responder, n):
    """n triples on new prompts: every policy answers once; the reference is a best-graded answer;
    (chosen, rejected) satisfy `relation` with grade(reference) >= grade(chosen) > grade(rejected),
    a correct chosen against an incorrect rejected where the task is checkable, qualities matched
    as closely as the prompt allows (so tidiness alone does not decide)."""
    rng = random.Random(f"{seed}|{name}")
    records, meta = [], []
    per_category = n // len(tasks.CATEGORIES) + 1
    counts = {c: 0 for c in tasks.CATEGORIES}
    attempts = 0
    while len(records) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise SystemExit(f"gen_data: {name}: only {len(records)} of {n} triples")
        category = min(tasks.CATEGORIES, key=lambda c: (counts[c], tasks.CATEGORIES.index(c)))
        if counts[category] >= per_category:
            category = rng.choice(tasks.CATEGORIES)
        (problem, prompt), = _problems(prng, 1, used, name, category)
        answers = [(p, responder.respond(rng, p, problem)) for p in pool]
        graded = [(tasks.grade(prompt, t), p, t) for p, t in answers]
        best = max(key for key, _, _ in graded)
        ref_key, ref_p, ref = rng.choice([g for g in graded if g[0] == best])
        pairs = [(c, j) for c in graded for j in graded
                 if c[1] is not ref_p and j[1] is not ref_p and c[0] > j[0] and c[0] <= ref_key
                 and c[2] != ref and j[2] != c[2] and relation(ref_p, c[1], j[1])]
        if category != "writing":
            pairs = [(c, j) for c, j in pairs if c[0][0] and not j[0][0]]
        if not pairs:
            continue
        gap = min(abs(c[0][1] - j[0][1]) for c, j in pairs)
        cho, rej = rng.choice([(c, j) for c, j in pairs if abs(c[0][1] - j[0][1]) == gap])
        records.append({"prompt": prompt, "reference": ref, "chosen": cho[2], "rejected": rej[2],
                        "category": problem[0]})
        meta.append((ref_p.name, cho[1].name, rej[1].name))
        counts[problem[0]] += 1
    return records, meta


def _score_demo(seed, pool, responder, used):
    """A handful of {prompt, reference, output}: a good and a bad output for the same reference."""
    rng = random.Random(f"{seed}|score")
    best = max(pool, key=lambda p: (p.skill, p.name))
    problems = [("arithmetic", "+", 2, 3, 0), ("counting", "letter", "a", "banana", 0),
                ("writing", "the ocean", ("waves",), 0)]
    lines = []
    for problem in problems:
        prompt = tasks.render_prompt(problem)
        reference = responder.respond(rng, best, problem)
        for _ in range(50):  # a demo reference should be a good answer
            if tasks.grade(prompt, reference)[0]:
                break
            reference = responder.respond(rng, best, problem)
        value = tasks.truth(problem)
        if value is not None:
            outputs = [f"The answer is {value}.", f"The answer is {value + 1}.", f"{value}"]
        else:
            outputs = ["The calm waves roll past the quiet ships.", "The busy streets hum at noon.",
                       "waves waves waves"]
        lines += [{"prompt": prompt, "reference": reference, "output": o} for o in outputs]
    return lines


# ------------------------------------------------------------------ metrics
def _topic_agreement(candidate, reference):
    """Share of the candidate's content words from the reference's main topic."""
    ref_topics = [tasks.WORD_TOPIC[w] for w in tasks.content_words(reference)]
    words = tasks.content_words(candidate)
    if not ref_topics or not words:
        return 0.0
    main = max(sorted(set(ref_topics)), key=ref_topics.count)
    return sum(tasks.WORD_TOPIC[w] == main for w in words) / len(words)


def _shape(text):
    return set(re.sub(r"\d+", "#", text.lower()).split())


def _jaccard(a, b):
    return len(a & b) / max(1, len(a | b))


def _vote(chosen_value, rejected_value):
    return 1.0 if chosen_value > rejected_value else 0.5 if chosen_value == rejected_value else 0.0


def measure(records, meta, held_out):
    """Per category and overall: accuracy of heuristics on the chosen-vs-rejected test pairs."""
    by_cat = {}
    for record, names in zip(records, meta):
        ref, cho, rej = record["reference"], record["chosen"], record["rejected"]
        if record["category"] == "writing":
            oracle = float(_topic_agreement(cho, ref) > _topic_agreement(rej, ref))
        else:
            r, c, j = (tasks.final_answer(x) for x in (ref, cho, rej))
            oracle = float(c == r and j != r)
        row = {"ref_answer_match": oracle,
               "longer_wins": _vote(len(cho), len(rej)),
               "shorter_wins": _vote(len(rej), len(cho)),
               "tidier_wins": _vote(tasks.format_score(cho), tasks.format_score(rej)),
               "ref_style_match": _vote(_jaccard(_shape(cho), _shape(ref)),
                                        _jaccard(_shape(rej), _shape(ref))),
               "held_out_involved": float(any(n in held_out for n in names)),
               "chosen_ref_family": float(_family(names[0]) == _family(names[1])),
               "rejected_ref_family": float(_family(names[0]) == _family(names[2]))}
        for cat in (record["category"], "all"):
            sums = by_cat.setdefault(cat, {"pairs": 0})
            sums["pairs"] += 1
            for k, v in row.items():
                sums[k] = sums.get(k, 0.0) + v
    return {cat: {k: (v if k == "pairs" else round(v / s["pairs"], 3)) for k, v in s.items()}
            for cat, s in sorted(by_cat.items())}


def pretrain_agreement(records, families):
    """How often two checkable trajectories state the same final answer: both from one policy, from
    two checkpoints of one family, from two families (the signal pre-training can learn)."""
    by_prompt = {}
    for r in records:
        if r["category"] != "writing":
            by_prompt.setdefault(r["prompt"], {}).setdefault(r["policy"], []).append(
                tasks.final_answer(r["response"]))
    sums = {"same_policy": [0, 0], "same_family": [0, 0], "other_family": [0, 0]}
    for answers in by_prompt.values():
        names = sorted(answers)
        for i, a in enumerate(names):
            sums["same_policy"][0] += answers[a][0] == answers[a][1]
            sums["same_policy"][1] += 1
            for b in names[i + 1:]:
                kind = "same_family" if families[a] == families[b] else "other_family"
                sums[kind][0] += answers[a][0] == answers[b][0]
                sums[kind][1] += 1
    return {k: round(hit / max(1, n), 3) for k, (hit, n) in sums.items()}
