"""A procedurally generated preference task with a known gold reward (documented as synthetic).

Prompts come from *domains* (prompt sources: their own topic words) and responses from *generators*
(their own filler words, lengths and the part of the sentiment vocabulary they use). The gold reward of
a response is ``#good words - #bad words``; the chosen response is the one with the higher gold
reward. Training on some domains/generators and testing on others gives controllable prompt and
response shift, with no download, so tests, examples and the ``ci`` benchmark preset run anywhere.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from rewardkit.data import PreferenceDataset, PreferencePair

GOOD = ["great", "good", "helpful", "clear", "correct", "useful", "precise", "kind"]
BAD = ["wrong", "rude", "bad", "useless", "unclear", "false", "vague", "harmful"]
DOMAINS: dict[str, list[str]] = {
    "cooking": ["recipe", "pasta", "bake", "oven", "salt", "soup"],
    "travel": ["trip", "flight", "hotel", "beach", "map", "train"],
    "science": ["atom", "cell", "energy", "star", "lab", "gene"],
    "finance": ["bank", "loan", "stock", "tax", "budget", "coin"],
}
GENERATORS: dict[str, dict] = {
    # filler words, response length range, slice of GOOD/BAD words the generator uses
    "gen_a": {"filler": ["the", "a", "of", "and", "to", "it"], "length": (6, 10), "sentiment": slice(0, 6)},
    "gen_b": {
        "filler": ["so", "then", "also", "just", "very", "is"],
        "length": (8, 12),
        "sentiment": slice(2, 8),
    },
    "gen_c": {
        "filler": ["we", "you", "this", "that", "with", "for"],
        "length": (5, 9),
        "sentiment": slice(1, 7),
    },
}
QUESTION = ["please", "tell", "me", "about", "how", "what", "why", "explain"]


def vocabulary() -> list[str]:
    """Every word the task can produce (for building a tokenizer that covers ID and OOD splits)."""
    words = GOOD + BAD + QUESTION + [w for ws in DOMAINS.values() for w in ws]
    words += [w for g in GENERATORS.values() for w in g["filler"]]
    return sorted(set(words))


def gold_reward(response: str) -> int:
    words = response.split()
    return sum(w in GOOD for w in words) - sum(w in BAD for w in words)


def _prompt(rng: random.Random, domain: str) -> str:
    topic = DOMAINS[domain]
    return " ".join(rng.sample(QUESTION, 3) + rng.sample(topic, 2))


def _response(rng: random.Random, generator: str, prompt: str) -> str:
    g = GENERATORS[generator]
    good, bad = GOOD[g["sentiment"]], BAD[g["sentiment"]]
    n = rng.randint(*g["length"])
    p_good, p_bad = rng.uniform(0.0, 0.45), rng.uniform(0.0, 0.45)
    topic = prompt.split()[-2:]
    words = []
    for _ in range(n):
        u = rng.random()
        words.append(
            rng.choice(good)
            if u < p_good
            else rng.choice(bad)
            if u < p_good + p_bad
            else rng.choice(g["filler"] + topic)
        )
    # plain-text prompts and responses are concatenated as they are (TRL's convention): the response
    # carries its separating space, as TRL's extract_prompt leaves it
    return " " + " ".join(words)


def make_synthetic_preferences(
    n: int,
    seed: int = 0,
    domains: Sequence[str] = ("cooking", "travel", "science"),
    generators: Sequence[str] = ("gen_a", "gen_b"),
) -> PreferenceDataset:
    """``n`` pairs; metadata: ``subset`` (domain), ``chosen_generator``, ``rejected_generator``,
    ``gold_chosen``, ``gold_rejected``. The two responses of a pair come from generators drawn
    independently from ``generators``; pairs whose gold rewards tie are redrawn."""
    for name, table in (("domain", DOMAINS), ("generator", GENERATORS)):
        for key in domains if name == "domain" else generators:
            if key not in table:
                raise ValueError(f"unknown {name} {key!r}; known: {sorted(table)}")
    rng = random.Random(seed)
    pairs = []
    while len(pairs) < n:
        domain = rng.choice(list(domains))
        prompt = _prompt(rng, domain)
        g1, g2 = rng.choice(list(generators)), rng.choice(list(generators))
        y1, y2 = _response(rng, g1, prompt), _response(rng, g2, prompt)
        r1, r2 = gold_reward(y1), gold_reward(y2)
        if r1 == r2:
            continue
        if r2 > r1:
            (y1, g1, r1), (y2, g2, r2) = (y2, g2, r2), (y1, g1, r1)
        pairs.append(
            PreferencePair(
                prompt,
                y1,
                y2,
                {
                    "subset": domain,
                    "chosen_generator": g1,
                    "rejected_generator": g2,
                    "gold_chosen": r1,
                    "gold_rejected": r2,
                },
            )
        )
    return PreferenceDataset(pairs, source=f"synthetic(seed={seed})")
