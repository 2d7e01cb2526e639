"""Training: pure losses, pydantic configs, thin Trainer subclasses.

Names are resolved on first use, so importing ``rewardkit.train.config`` (as ``rewardkit merge`` does for
its config) does not import transformers' Trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DPOTrainingConfig": "rewardkit.train.config",
    "RewardTrainingConfig": "rewardkit.train.config",
    "bradley_terry_loss": "rewardkit.train.losses",
    "centering_penalty": "rewardkit.train.losses",
    "dpo_loss": "rewardkit.train.losses",
    "reward_model_loss": "rewardkit.train.losses",
    "train_dpo": "rewardkit.train.dpo",
    "train_reward_model": "rewardkit.train.trainer",
}

__all__ = [
    "DPOTrainingConfig",
    "RewardTrainingConfig",
    "bradley_terry_loss",
    "centering_penalty",
    "dpo_loss",
    "reward_model_loss",
    "train_dpo",
    "train_reward_model",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rewardkit.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from rewardkit.train.config import DPOTrainingConfig, RewardTrainingConfig
    from rewardkit.train.dpo import train_dpo
    from rewardkit.train.losses import bradley_terry_loss, centering_penalty, dpo_loss, reward_model_loss
    from rewardkit.train.trainer import train_reward_model
