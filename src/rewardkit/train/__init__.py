"""Training: pure losses, pydantic configs, thin Trainer subclasses.

Names are resolved on first use, so importing ``rewardkit.train.config`` (as ``rewardkit merge`` does for
its config) does not import transformers' Trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rewardkit.util import lazy_exports

_EXPORTS = {
    "DPOTrainingConfig": "rewardkit.train.config",
    "RewardTrainingConfig": "rewardkit.train.config",
    "bradley_terry_loss": "rewardkit.train.losses",
    "centering_penalty": "rewardkit.train.losses",
    "dpo_loss": "rewardkit.train.losses",
    "reward_model_loss": "rewardkit.train.losses",
    "train_dpo": "rewardkit.train.dpo",
    "train_reward_model": "rewardkit.train.bradley_terry",
    "train_warm": "rewardkit.train.warm",
    "Trained": "rewardkit.train.result",
    "TrainingRecord": "rewardkit.train.result",
}

__all__ = [
    "DPOTrainingConfig",
    "RewardTrainingConfig",
    "Trained",
    "TrainingRecord",
    "bradley_terry_loss",
    "centering_penalty",
    "dpo_loss",
    "reward_model_loss",
    "train_dpo",
    "train_reward_model",
    "train_warm",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from rewardkit.train.bradley_terry import train_reward_model
    from rewardkit.train.config import DPOTrainingConfig, RewardTrainingConfig
    from rewardkit.train.dpo import train_dpo
    from rewardkit.train.losses import bradley_terry_loss, centering_penalty, dpo_loss, reward_model_loss
    from rewardkit.train.result import Trained, TrainingRecord
    from rewardkit.train.warm import train_warm
