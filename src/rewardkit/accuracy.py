"""Pairwise accuracy: per-pair credit under a tie policy (:func:`correctness`), its mean
(:func:`pairwise_accuracy`) and the finite check every metric makes first (:func:`check_finite`).

Pure numpy, low in the layers: ``PairScores.accuracy``, the trainers' eval metrics and
:mod:`rewardkit.eval.metrics` all count a pair the same way."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from rewardkit.errors import ModelError

TiePolicy = Literal["half", "correct", "wrong"]

#: credit of a tied pair (margin == 0) under each tie policy
TIE_CREDIT: dict[str, float] = {"half": 0.5, "correct": 1.0, "wrong": 0.0}


def correctness(margins: np.ndarray, ties: TiePolicy = "half") -> np.ndarray:
    """Per-pair credit ([n] float64): 1 if r_chosen > r_rejected, 0 if below, and for a tie 1/2, 1 or 0.

    WARM counts r+ >= r- as correct (``ties="correct"``); TRL and RewardBench count ties wrong
    (``"wrong"``). NaN or infinite margins are refused (:func:`check_finite`)."""
    if ties not in TIE_CREDIT:
        raise ValueError(f"ties must be 'half', 'correct' or 'wrong', got {ties!r}")
    m = check_finite(margins, "margins")
    return np.where(m > 0, 1.0, np.where(m == 0, TIE_CREDIT[ties], 0.0))


def pairwise_accuracy(margins: np.ndarray, ties: TiePolicy = "half") -> float:
    """Fraction of pairs with r_chosen > r_rejected, ties credited by ``ties`` (:func:`correctness`)."""
    c = correctness(margins, ties)
    if c.size == 0:
        raise ValueError("accuracy of zero pairs is undefined")
    return float(c.mean())


def check_finite(values: Any, name: str) -> np.ndarray:
    """``values`` as a float64 array; a NaN or infinite value is refused with its count (a NaN margin
    is neither right nor wrong: counting it either way would bias every metric)."""
    arr = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ModelError(f"{name}: {int(bad.sum())} of {arr.size} values are NaN or infinite")
    return arr
