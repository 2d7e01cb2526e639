"""Training: pure losses, pydantic configs, thin Trainer subclasses."""

from rewardkit.train.config import DPOTrainingConfig, RewardTrainingConfig
from rewardkit.train.dpo import train_dpo
from rewardkit.train.losses import bradley_terry_loss, centering_penalty, dpo_loss, reward_model_loss
from rewardkit.train.trainer import train_reward_model

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
