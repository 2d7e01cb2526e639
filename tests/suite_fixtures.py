"""Tiny RewardBench / RewardBench 2 rows in the official layouts, and a reward model without weights, for
tests/test_rewardbench.py and tests/test_suites.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from rewardkit.base import RewardModel
from rewardkit.eval.rewardbench import V1_SUBSETS, V2_SUBSETS
from rewardkit.synthetic import vocabulary

WORDS = vocabulary()


def _text(rng: random.Random, k: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(k))


def v1_rows(seed: int = 0, per_subset: int = 2) -> list[dict]:
    """Rows in allenai/reward-bench's layout, every official subset."""
    rng = random.Random(seed)
    return [
        {
            "prompt": _text(rng),
            "chosen": _text(rng, rng.randint(3, 9)),
            "chosen_model": "m1",
            "rejected": _text(rng, rng.randint(3, 9)),
            "rejected_model": "m2",
            "subset": subset,
            "id": 100 * i + j,
        }
        for i, subset in enumerate(V1_SUBSETS)
        for j in range(per_subset)
    ]


def v2_rows(seed: int = 0) -> list[dict]:
    """Rows in allenai/reward-bench-2's layout: five best-of-4 subsets and Ties prompts with both
    samples, a tied sample alone, a ref sample alone and a tied sample with one correct answer."""
    rng = random.Random(seed)

    def row(id_, subset, n_correct, n_rejected):
        chosen = [_text(rng, rng.randint(3, 9)) for _ in range(n_correct)]
        rejected = [_text(rng, rng.randint(3, 9)) for _ in range(n_rejected)]
        return {
            "id": id_,
            "prompt": _text(rng),
            "chosen": chosen,
            "rejected": rejected,
            "num_correct": n_correct,
            "num_rejected": n_rejected,
            "total_completions": n_correct + n_rejected,
            "models": ["m"] * (n_correct + n_rejected),
            "subset": subset,
        }

    rows = [row(str(10 * i + j), s, 1, 3) for i, s in enumerate(V2_SUBSETS[:-1]) for j in range(3)]
    for pid in range(4):
        rows += [row(f"ref:{pid}", "Ties", 1, 3), row(f"tied:{pid}", "Ties", 3, 3)]
    rows += [row("tied:7", "Ties", 2, 2), row("ref:8", "Ties", 1, 2), row("ref:9", "Ties", 1, 2)]
    rows += [row("tied:9", "Ties", 1, 2)]
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class WordCountRM(RewardModel):
    """reward = number of words of the response; records every engine call."""

    def __init__(self):
        self.calls = []

    def score_texts(self, texts):
        self.calls.append(texts)
        return np.array([len(r.split()) for r in texts.responses], dtype=np.float32)

    def save(self, path, *, force=False):  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def _load(cls, path, manifest, **kwargs):  # pragma: no cover
        raise NotImplementedError
