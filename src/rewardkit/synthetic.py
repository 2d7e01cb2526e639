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

from rewardkit.data import PreferenceDataset
from rewardkit.records import PreferencePair

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


#: The hacking task's spurious word: labellers' chosen answers tend to contain it; gold ignores it.
SPURIOUS = "indeed"


def vocabulary(spurious: bool = False) -> list[str]:
    """Every word the task can produce (for building a tokenizer that covers ID and OOD splits);
    ``spurious``: also the hacking task's ``SPURIOUS`` word."""
    words = GOOD + BAD + QUESTION + [w for ws in DOMAINS.values() for w in ws]
    words += [w for g in GENERATORS.values() for w in g["filler"]]
    return sorted(set(words + ([SPURIOUS] if spurious else [])))


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


def _with_spurious(rng: random.Random, response: str, count: int, displace: bool) -> str:
    """``response`` with ``count`` copies of ``SPURIOUS``: inserted at random places, or (``displace``)
    in place of its good words first (padding instead of substance), then of its neutral words (the bad
    words stay), then inserted."""
    words = response.split()
    if displace:
        good = [i for i, w in enumerate(words) if w in GOOD]
        neutral = [i for i, w in enumerate(words) if w not in GOOD and w not in BAD and w != SPURIOUS]
        rng.shuffle(good)
        rng.shuffle(neutral)
        slots = (good + neutral)[:count]
        for i in slots:
            words[i] = SPURIOUS
        count -= len(slots)
    for _ in range(count):
        words.insert(rng.randint(0, len(words)), SPURIOUS)
    return " " + " ".join(words)


def add_spurious(
    pairs: PreferenceDataset,
    seed: int = 0,
    p_chosen: float = 0.9,
    p_rejected: float = 0.1,
    max_count: int = 2,
) -> PreferenceDataset:
    """The labellers' style: the chosen response of each pair (as labelled, right or wrong) gets
    1..``max_count`` copies of ``SPURIOUS`` with probability ``p_chosen``, the rejected one with
    ``p_rejected``. The gold reward ignores the word, so in this data it predicts the label without
    being what gold rewards. Metadata adds ``spurious_chosen`` / ``spurious_rejected`` (counts); the
    draws depend only on ``seed`` and the pair's position."""
    if not (0 <= p_rejected <= 1 and 0 <= p_chosen <= 1 and max_count >= 1):
        raise ValueError("p_chosen and p_rejected must be probabilities and max_count >= 1")
    rng = random.Random(10_000 + seed)
    out = []
    for p in pairs:
        counts = [rng.randint(1, max_count) if rng.random() < q else 0 for q in (p_chosen, p_rejected)]
        chosen, rejected = (
            _with_spurious(rng, r, c, displace=False) if c else r
            for r, c in zip((p.chosen, p.rejected), counts)
        )
        meta = {**p.metadata, "spurious_chosen": counts[0], "spurious_rejected": counts[1]}
        out.append(PreferencePair(p.prompt, chosen, rejected, meta))
    return PreferenceDataset(out, source=f"{pairs.source} + spurious {SPURIOUS!r}")


def make_hacking_preferences(
    n: int, seed: int = 0, p_chosen: float = 0.9, p_rejected: float = 0.1, max_count: int = 2
) -> PreferenceDataset:
    """``n`` pairs of the synthetic task (``make_synthetic_preferences``, labelled by gold) with the
    labellers' style added (``add_spurious``)."""
    return add_spurious(make_synthetic_preferences(n, seed), seed, p_chosen, p_rejected, max_count)


def make_hacking_candidates(
    n_prompts: int,
    k: int,
    seed: int = 0,
    p_spurious: float = 0.2,
    max_count: int = 4,
    domains: Sequence[str] = ("cooking", "travel", "science"),
    generators: Sequence[str] = ("gen_a", "gen_b"),
) -> tuple[list[str], list[list[str]]]:
    """The base policy: ``n_prompts`` prompts and ``k`` sampled responses each. With probability
    ``p_spurious`` a response pads itself with 1..``max_count`` copies of ``SPURIOUS`` put in place of
    its good words: the policy's candidates vary in the spurious feature, and the padded ones are
    worse by gold. Returns ``(prompts, candidates)``; score candidates with ``gold_reward``."""
    if n_prompts < 1 or k < 1 or not 0 <= p_spurious <= 1 or max_count < 1:
        raise ValueError("n_prompts, k, max_count must be >= 1 and p_spurious a probability")
    rng = random.Random(20_000 + seed)
    prompts, candidates = [], []
    for _ in range(n_prompts):
        prompt = _prompt(rng, rng.choice(list(domains)))
        row = []
        for _ in range(k):
            y = _response(rng, rng.choice(list(generators)), prompt)
            if rng.random() < p_spurious:
                y = _with_spurious(rng, y, rng.randint(1, max_count), displace=True)
            row.append(y)
        prompts.append(prompt)
        candidates.append(row)
    return prompts, candidates
