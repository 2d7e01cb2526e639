"""Training: pure losses, pydantic configs, thin Trainer subclasses."""

from rewardkit.train.config import RewardTrainingConfig
from rewardkit.train.losses import bradley_terry_loss, centering_penalty, reward_model_loss
from rewardkit.train.trainer import train_reward_model

__all__ = ["RewardTrainingConfig", "bradley_terry_loss", "centering_penalty", "reward_model_loss",
           "train_reward_model"]
