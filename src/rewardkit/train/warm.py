"""WARM / Baklava recipes (Ramé et al.): train one explicit RM per grid entry, then average their weights."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardkit.io import refuse_existing
from rewardkit.locks import hold_output
from rewardkit.merge.average import weight_average
from rewardkit.train.bradley_terry import train_reward_model


def train_warm(
    bases: str | os.PathLike | Sequence[str | os.PathLike],
    train_data: Any,
    out: str | os.PathLike,
    grid: Sequence[dict[str, Any]],
    *,
    merge: bool = True,
    force: bool = False,
    **common: Any,
) -> dict[str, Any]:
    """Train one explicit RM per ``grid`` entry (e.g. ``{"head_seed": 1, "data_seed": 1, "lr": 2e-5,
    "dropout": 0.1}``) and average their weights (WARM).

    ``bases``: one pre-trained checkpoint shared by all members, or one per member (Baklava: different
    checkpoints of one SFT run). Members must share pre-training: the merge refuses members whose
    architecture or tensor shapes differ. Returns ``{"members": [dirs], "warm": dir or None}``.
    """
    out = Path(out)
    base_list = [bases] * len(grid) if isinstance(bases, (str, os.PathLike)) else list(bases)
    if len(base_list) != len(grid):
        raise ValueError(f"got {len(base_list)} base checkpoints for {len(grid)} grid entries")
    with hold_output(out):  # one writer per output, as train_reward_model
        refuse_existing(out, force)
        members = []
        for i, (base, overrides) in enumerate(zip(base_list, grid)):
            folder = out / f"member_{i}"
            train_reward_model(base, train_data, out=folder, force=force, **{**common, **overrides})
            members.append(folder)
        warm = weight_average(members, out=out / "warm", force=force) if merge else None
    return {"members": members, "warm": warm}
