"""WARM tools: linear mode connectivity (LMC) curves, interpolation and label corruption (Ramé et al.);
training a WARM grid is :func:`rewardkit.train.warm.train_warm`."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.accuracy import pairwise_accuracy
from rewardkit.data import PreferenceDataset, as_pairs
from rewardkit.merge.average import weight_average
from rewardkit.models.registry import load_reward_model
from rewardkit.records import PreferencePair


def interpolate(
    rm_a: str | os.PathLike, rm_b: str | os.PathLike, t: float, out: str | os.PathLike, force: bool = False
) -> Path:
    """The weight interpolation (1 - t) * phi_a + t * phi_b, saved to ``out``."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    return weight_average([rm_a, rm_b], [1.0 - t, t], out=out, force=force, progress=False)


def lmc_curve(
    rm_a: str | os.PathLike,
    rm_b: str | os.PathLike,
    pairs: Any,
    ts: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    ties: str = "half",
) -> dict[str, list[float]]:
    """For each t: accuracy of the weight-interpolated model (``wa``), of the interpolated
    predictions (``ens``) and the interpolated accuracies (``diag``) (WARM, Fig. 3)."""
    pairs = as_pairs(pairs)
    ma = load_reward_model(rm_a).score_pairs(pairs).margins
    mb = load_reward_model(rm_b).score_pairs(pairs).margins
    acc_a, acc_b = pairwise_accuracy(ma, ties), pairwise_accuracy(mb, ties)
    out: dict[str, list[float]] = {"t": [], "wa": [], "ens": [], "diag": []}
    with tempfile.TemporaryDirectory(prefix="rewardkit-lmc-") as tmp:
        for i, t in enumerate(ts):
            folder = interpolate(rm_a, rm_b, t, Path(tmp) / f"wa{i}")
            wa = load_reward_model(folder).score_pairs(pairs).margins
            out["t"].append(float(t))
            out["wa"].append(pairwise_accuracy(wa, ties))
            out["ens"].append(pairwise_accuracy((1 - t) * ma + t * mb, ties))
            out["diag"].append((1 - t) * acc_a + t * acc_b)
    return out


def corrupt_labels(pairs: Any, fraction: float, seed: int = 0) -> tuple[PreferenceDataset, np.ndarray]:
    """Swap chosen and rejected in a ``fraction`` of the pairs (WARM, Fig. 4).

    Returns the corrupted dataset (each pair's metadata gets ``label_corrupted``) and the boolean mask
    of corrupted pairs, so train-corrupt / train-clean accuracy can be reported separately.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    pairs = as_pairs(pairs)
    idx = set(random.Random(seed).sample(range(len(pairs)), round(fraction * len(pairs))))
    mask = np.array([i in idx for i in range(len(pairs))])
    out = [
        PreferencePair(p.prompt, p.rejected, p.chosen, {**p.metadata, "label_corrupted": True})
        if i in idx
        else PreferencePair(p.prompt, p.chosen, p.rejected, {**p.metadata, "label_corrupted": False})
        for i, p in enumerate(pairs)
    ]
    return PreferenceDataset(out, source=f"{pairs.source} (corrupted {fraction:.0%}, seed {seed})"), mask
