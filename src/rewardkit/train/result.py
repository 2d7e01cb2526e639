"""What a trainer returns: the trained model and the record of its run, as typed fields (never
attributes added to the model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from rewardkit.base import RewardModel

M = TypeVar("M", bound=RewardModel)


@dataclass(frozen=True)
class TrainingRecord:
    """One training run.

    Attributes:
        world_size: processes that trained (1 without torchrun).
        optimizer_steps: optimizer steps over every phase (a linear probe's included).
        train_pairs: preference pairs trained on.
        first_loss: loss of the first training batch (nats; DPO from an equal reference: log 2), or None.
        config: the run's settings (``RewardTrainingConfig`` / ``DPOTrainingConfig`` as a dict).
        log_history: the HF Trainer's logged rows (loss, learning rate, eval metrics), every phase in order.
    """

    world_size: int
    optimizer_steps: int
    train_pairs: int
    first_loss: float | None
    config: dict[str, Any]
    log_history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Trained(Generic[M]):
    """A trainer's result: ``model`` (ready to score, saved to ``out`` when one was given) and ``record``."""

    model: M
    record: TrainingRecord
