"""The synthetic policy pool: six style families, four checkpoints each (same style, rising skill).

A family plays the part of one model line: its checkpoints share answer templates, punctuation and
casing habits, a preferred kind of mistake and, through `belief`, which problems they get wrong, so
neighbouring checkpoints agree more than strangers do and policy discrimination is graded.
"""

from dataclasses import dataclass, field

# Probability of a correct answer for checkpoints c1..c4; a family shifts its ladder a little so
# that no single family is "the good one".
SKILL_LADDER = (0.30, 0.52, 0.72, 0.90)

# punct: ends with terminal punctuation; work: shows the computation; hedge: adds "I think"-like
# words; filler: chatty openers/closers; lower: lower-cases the whole response.
FAMILIES = {
    "plain": dict(shift=0.00, punct=0.95, work=0.15, hedge=0.05, filler=0.00, lower=False,
                  mistakes={"off_by_one": 3, "random": 1}),
    "worked": dict(shift=0.02, punct=0.90, work=0.90, hedge=0.10, filler=0.10, lower=False,
                   mistakes={"confusion": 2, "off_by_one": 2, "digit_swap": 1}),
    "terse": dict(shift=-0.02, punct=0.15, work=0.05, hedge=0.00, filler=0.00, lower=True,
                  mistakes={"digit_swap": 3, "off_by_one": 1}),
    "chatty": dict(shift=0.01, punct=0.85, work=0.50, hedge=0.35, filler=0.85, lower=False,
                   mistakes={"random": 2, "off_by_one": 2}),
    "casual": dict(shift=-0.01, punct=0.30, work=0.25, hedge=0.50, filler=0.40, lower=True,
                   mistakes={"off_by_one": 2, "random": 1, "confusion": 1}),
    "formal": dict(shift=0.02, punct=1.00, work=0.60, hedge=0.00, filler=0.05, lower=False,
                   mistakes={"digit_swap": 2, "confusion": 1, "off_by_one": 1}),
}
FAMILY_ORDER = ("plain", "worked", "terse", "chatty", "casual", "formal")

# Held out of pre-training: one whole style family (unseen style) plus one checkpoint of four other
# families (unseen skill level of a known style). 24 - 8 = 16 pre-training policies.
HELD_OUT = ("formal-c1", "formal-c2", "formal-c3", "formal-c4",
            "plain-c3", "worked-c2", "terse-c4", "chatty-c1")


@dataclass(frozen=True)
class Policy:
    name: str
    family: str
    checkpoint: int
    skill: float
    held_out: bool
    style: dict = field(hash=False, compare=False)
    mistakes: dict = field(hash=False, compare=False)

    def to_json(self):
        return {"name": self.name, "family": self.family, "checkpoint": self.checkpoint,
                "step": self.checkpoint,
                "skill": self.skill, "held_out": self.held_out, "style": self.style,
                "mistakes": self.mistakes}


def build_pool():
    """All 24 policies, in a fixed order (family order, then checkpoint)."""
    pool = []
    for family in FAMILY_ORDER:
        spec = FAMILIES[family]
        style = {k: spec[k] for k in ("punct", "work", "hedge", "filler", "lower")}
        for index, base in enumerate(SKILL_LADDER, start=1):
            name = f"{family}-c{index}"
            skill = round(min(0.97, max(0.05, base + spec["shift"])), 3)
            pool.append(Policy(name, family, index, skill, name in HELD_OUT, dict(style),
                               dict(sorted(spec["mistakes"].items()))))
    return pool
