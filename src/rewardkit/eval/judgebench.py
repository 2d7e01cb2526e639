"""JudgeBench (Tan et al., ICLR 2025) for reward models, scored as the official code scores them:
``run_judge.py``, ``utils/metrics.py`` (``compute_final_metrics``) and the reward-model judges of
``utils/judges.py`` in ScalerLab/JudgeBench, read at commit e2c52c284e735e139b3daa61c206ee208f36c461
(2024-11-06; ``utils/judges.py`` and ``run_judge.py`` at d8740a8).

A row is a pair: ``question``, ``response_A``, ``response_B``, ``label`` ("A>B" or "B>A"), ``pair_id``,
``source``. A reward-model judge scores both responses (the question as a user turn) and decides
"A>B" when r(A) > r(B), else "B>A", so **a tie decides "B>A"**. The README runs reward models with
``--single_game`` (one order: they score each response on its own), where a pair is right when the
decision equals the label: that is ``score`` here, and a tie is right exactly when the label is
"B>A". Without ``--single_game`` the pair is judged in both orders, the second decision flipped, and a
pair counts right when the two decisions hold more votes for the label than against it; for a reward
model that is r(correct) > r(wrong) strictly (a tie gives one vote each way: counted as a tie, not right):
``two_game`` here.

Categories, as ``run_judge.py`` prints them: the sources starting with ``mmlu-pro`` (knowledge),
``livebench-reasoning``, ``livebench-math`` and ``livecodebench``; overall is over every pair (not the
mean of the categories). The official code reports percentages (and divides by zero on an empty
category); rewardkit reports fractions and leaves an absent category out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardkit.errors import DataError
from rewardkit.eval.bench_data import BenchExample, BenchSpec, id_of, object_of, text_of, user_turn

CATEGORIES: tuple[str, ...] = ("mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench")
LABELS = ("A>B", "B>A")
ALL = "overall"
SCORING_SOURCE = (
    "ScalerLab/JudgeBench utils/metrics.py (compute_final_metrics) @ e2c52c284e735e139b3daa61c206ee208f36c461; "
    "utils/judges.py, run_judge.py @ d8740a811eb8c64a37eb22a1f3c80ff194ec284d"
)


def decision(score_a: np.ndarray, score_b: np.ndarray) -> np.ndarray:
    """[n] the official reward-model decision: "A>B" where r(A) > r(B), else "B>A" (ties too)."""
    return np.where(np.asarray(score_a) > np.asarray(score_b), "A>B", "B>A")


def single_game(score_a: np.ndarray, score_b: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[n] 1.0 where the one-order decision equals the label (``--single_game``)."""
    return (decision(score_a, score_b) == np.asarray(labels)).astype(np.float64)


def two_game(score_a: np.ndarray, score_b: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[n] 1.0 where the votes of both orders (the second flipped) favour the label: for a reward model,
    the labelled winner's reward is strictly higher."""
    first = decision(score_a, score_b)
    second = np.where(decision(score_b, score_a) == "A>B", "B>A", "A>B")  # flip_judgment
    labels = np.asarray(labels)
    flipped = np.where(labels == "A>B", "B>A", "A>B")
    votes = (first == labels).astype(int) + (second == labels) - (first == flipped) - (second == flipped)
    return (votes > 0).astype(np.float64)


def category_of(source: str) -> str | None:
    return next((c for c in CATEGORIES if source.startswith(c)), None)


def parse_row(rec: Any, where: str) -> BenchExample:
    """One pair of a JudgeBench file (``data/dataset=judgebench,response_model=....jsonl`` or the hub's
    ``gpt`` / ``claude`` split)."""
    rec = object_of(rec, where)
    label = text_of(rec, "label", where)
    if label not in LABELS:
        raise DataError(f"{where}: field 'label': expected 'A>B' or 'B>A', got {label!r}")
    source = text_of(rec, "source", where)
    category = category_of(source)
    groups = (ALL,) if category is None else (category, ALL)
    completions = [text_of(rec, "response_A", where), text_of(rec, "response_B", where)]
    labels = {"label": label, "source": source}
    return BenchExample(
        id_of(rec, "pair_id", where), groups, user_turn(text_of(rec, "question", where)), completions, labels
    )


def features(examples: list[BenchExample], rewards: list[np.ndarray]) -> np.ndarray:
    """[n, 2] (single-game, two-game) correctness per pair."""
    r = np.stack(rewards)
    labels = np.array([e.labels["label"] for e in examples])
    return np.stack([single_game(r[:, 0], r[:, 1], labels), two_game(r[:, 0], r[:, 1], labels)], axis=1)


def combine(means: dict[str, np.ndarray], counts: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {c: means[c][..., 0] for c in CATEGORIES if c in means}
    out["score"] = means[ALL][..., 0]
    out.update({f"two_game/{c}": means[c][..., 1] for c in CATEGORIES if c in means})
    out["two_game"] = means[ALL][..., 1]
    return out


def row(example: BenchExample, rewards: np.ndarray) -> dict[str, Any]:
    return {
        "id": example.id,
        "source": example.labels["source"],
        "label": example.labels["label"],
        "score_A": float(rewards[0]),
        "score_B": float(rewards[1]),
    }


JUDGEBENCH = BenchSpec(
    name="judgebench",
    title="JudgeBench",
    hub=(("ScalerLab/JudgeBench", "gpt"),),
    scoring_source=SCORING_SOURCE,
    parse=parse_row,
    features=features,
    combine=combine,
    row=row,
    groups=(*CATEGORIES, ALL),
)
