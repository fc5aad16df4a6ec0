"""How a policy answers: skill decides what it says, its family's style decides how it says it.

Checkable tasks: a family holds a per-problem "belief" (a uniform draw u and one preferred wrong
answer); most of the time a checkpoint answers from it (correct iff u < skill), so checkpoints of
one family agree on which problems they miss and how, and two samples of one policy usually agree.
Writing: slots of a family sentence skeleton are filled from the topic's word lists; low skill
drifts to a (family-preferred) other topic, skips the required words, repeats or cuts off.
"""

import dataclasses
import random

from . import tasks
from .pool import FAMILIES, FAMILY_ORDER

CONSISTENCY = 0.9  # share of samples answered from the family belief rather than afresh

# Answer templates per family: (without work, with work). {n} answer, {claim}/{work} clauses,
# capitalised variants {Claim}/{Work}. The answer is always the last number of the text.
ANSWER_TEMPLATES = {
    "plain": (("The answer is {n}.", "It is {n}.", "{Claim}."), ("{Work}, so the answer is {n}.",)),
    "worked": (("The result is {n}.", "{Claim}."),
               ("{Work}. So the answer is {n}.", "First, {work}. The answer is {n}.")),
    "terse": (("{n}", "answer: {n}", "= {n}"), ("{work}",)),
    "chatty": (("The answer is {n}.", "{Claim}."), ("{Work}, so the answer is {n}.",)),
    "casual": (("its {n}", "{n} for sure", "{claim}"), ("{work} which makes {n}",)),
    "formal": (("Result: {n}.", "The correct value is {n}."),
               ("Working it out, {work}. Therefore, the answer is {n}.",)),
}
FILLER = {"chatty": (("Sure! ", " Hope that helps!"), ("Great question! ", " Happy to help!")),
          "casual": (("ok so ", " lol"),)}
HEDGE = {"plain": "Probably ", "worked": "I think ", "chatty": "I believe ", "casual": "i think ",
         "terse": "maybe ", "formal": "Maybe "}

# Writing skeletons per family: A adjective, N/N2 nouns, V verb, T topic name. Every skeleton has
# the same four content slots, so length and family say nothing about being on topic.
WRITE_TEMPLATES = {
    "plain": ("The {A} {N} {V} near the {N2}.", "Some {A} {N} {V} by the {N2}."),
    "worked": ("Here is one sentence about {T}: the {A} {N} {V} beside the {N2}.",
               "Here is a sentence about {T}: on most days the {A} {N} {V} past the {N2}."),
    "terse": ("{A} {N} {V} by {N2}", "{N} {V}, {A} {N2}"),
    "chatty": ("Sure! The {A} {N} {V} near the {N2}, and it is lovely!",
               "Sure! I picture {A} {N} that {V} around the {N2}, and it is lovely!"),
    "casual": ("ok so the {N} {V} and the {N2} are {A} lol", "the {N} {V} near {A} {N2} lol"),
    "formal": ("Beyond the {A} {N2}, the {N} {V} with quiet grace.",
               "Within {T}, {A} {N} {V} among the {N2}."),
}


def _cap(text):
    return text[:1].upper() + text[1:]


def mistake(rng, kind, problem, value):
    """A wrong integer of the given kind; never equal to the truth, never negative."""
    if kind == "digit_swap" and value >= 10 and str(value) != str(value)[::-1]:
        wrong = int(str(value)[::-1])
    elif kind == "confusion" and problem[0] == "arithmetic":
        _, op, a, b, _ = problem
        wrong = {"+": abs(a - b), "-": a + b, "x": a + b}[op]
    elif kind == "confusion" and problem[1] == "letter":
        wrong = len(problem[3])
    elif kind == "random":
        wrong = max(0, value + rng.randint(-12, 12))
    else:
        wrong = value + rng.choice((-1, 1)) if value > 0 else 1
    return wrong if wrong != value and wrong >= 0 else value + 1


def _weighted(rng, weights):
    names = sorted(weights)
    return rng.choices(names, [weights[n] for n in names])[0]


class Responder:
    """Samples responses of any policy; beliefs are cached per (family, problem). style_mix is the
    share of samples whose surface style (templates, punctuation, fillers) is borrowed from a
    random family (gen_data.py --style-mix). Real policies are not identified by a fixed phrasing;
    mixing styles makes *what* a policy answers (skill, shared mistakes) the main sign of its
    identity, as in POLAR's policy pool. 0 keeps every family's own style (the quickstart's world)."""

    def __init__(self, seed, style_mix):
        self.seed = seed
        self.style_mix = style_mix
        self._beliefs = {}

    def belief(self, policy, problem):
        key = (policy.family, problem)
        if key not in self._beliefs:
            brng = random.Random(f"{self.seed}|belief|{policy.family}|{problem!r}")
            u = brng.random()
            if problem[0] == "writing":
                drift = brng.choice([t for t in tasks.TOPIC_ORDER if t != problem[1]])
                self._beliefs[key] = (u, drift)
            else:
                value = tasks.truth(problem)
                self._beliefs[key] = (u, mistake(brng, _weighted(brng, policy.mistakes), problem, value))
        return self._beliefs[key]

    def _voice(self, rng, policy):
        """The policy whose surface style this sample uses (content stays the policy's own)."""
        if rng.random() >= self.style_mix:
            return policy
        family = rng.choice(FAMILY_ORDER)
        spec = FAMILIES[family]
        return dataclasses.replace(policy, family=family,
                                   style={k: spec[k] for k in ("punct", "work", "hedge", "filler", "lower")})

    def respond(self, rng, policy, problem):
        voice = self._voice(rng, policy)
        if problem[0] == "writing":
            return self._write(rng, policy, problem, voice)
        value = tasks.truth(problem)
        u, family_wrong = self.belief(policy, problem)
        if rng.random() < CONSISTENCY:
            answer = value if u < policy.skill else family_wrong
        elif rng.random() < policy.skill:
            answer = value
        else:
            answer = mistake(rng, _weighted(rng, policy.mistakes), problem, value)
        return self._style_answer(rng, voice, problem, answer)

    def _style_answer(self, rng, policy, problem, n):
        style = policy.style
        if problem[0] == "arithmetic":
            _, op, a, b, _ = problem
            work = f"{a} {tasks.ARITH_SYMBOL[op]} {b} = {n}"
            claim = work
        else:
            _, kind, target, text, _ = problem
            claim = {"letter": f"the letter '{target}' appears {n} times",
                     "words": f"the sentence has {n} words", "items": f"the list has {n} items"}[kind]
            work = {"letter": f"'{text}' is spelled {'-'.join(text)}, so '{target}' appears {n} times",
                    "words": f"counting the words one by one gives {n}",
                    "items": f"counting the items one by one gives {n}"}[kind]
        plain, worked = ANSWER_TEMPLATES[policy.family]
        template = rng.choice(worked if rng.random() < style["work"] else plain)
        text = template.format(n=n, claim=claim, work=work, Claim=_cap(claim), Work=_cap(work))
        if rng.random() < style["hedge"]:
            text = HEDGE[policy.family] + (text[:1].lower() + text[1:])
        return self._finish(rng, policy, text)

    def _finish(self, rng, policy, text, filler=True):
        style = policy.style
        if filler and policy.family in FILLER and rng.random() < style["filler"]:
            opener, closer = rng.choice(FILLER[policy.family])
            if not text.startswith(opener.strip().split()[0]):
                text = opener + text + closer
        text = text.rstrip(".!? ")
        if rng.random() < style["punct"]:
            text += "!" if policy.family == "chatty" and rng.random() < 0.5 else "."
        return text.lower() if style["lower"] else text

    def _write(self, rng, policy, problem, voice):
        _, topic, required, _ = problem
        skill = policy.skill
        _, drift = self.belief(policy, problem)
        p_on = 0.4 + 0.6 * skill

        def pick(part, avoid=()):
            source = topic if rng.random() < p_on else drift
            options = [w for w in tasks.TOPIC_WORDS[source][part] if w not in avoid]
            return rng.choice(options)

        slots = {"N": pick(0), "A": pick(1), "V": pick(2)}
        slots["N2"] = pick(0, (slots["N"],))
        for word in required:
            if rng.random() > 0.05 + 0.35 * (1 - skill):
                is_noun = word in tasks.TOPIC_WORDS[topic][0]
                slot = ("N" if rng.random() < 0.5 else "N2") if is_noun else "A"
                other = {"N": "N2", "N2": "N", "A": "A"}[slot]
                if slots[other] == word and other != slot:
                    slots[other] = slots[slot]
                slots[slot] = word
        if rng.random() < 0.03 + 0.3 * (1 - skill):
            slots["N2"] = slots["N"]  # repetition
        template = rng.choice(WRITE_TEMPLATES[voice.family])
        text = template.format(T=topic, **slots)
        if rng.random() < 0.03 + 0.25 * (1 - skill):  # cut off mid-sentence
            text = " ".join(text.rstrip(".!").split(" ")[:-1]).rstrip(",")
            return text.lower() if voice.style["lower"] else text
        return self._finish(rng, voice, text, filler=False)
