"""rewardkit: reward models for RLHF.

Public names are re-exported here; see docs/ for guides.
"""

__version__ = "0.1.0"

from rewardkit.base import PairScores, RewardModel, load_reward_model, pairwise_accuracy
from rewardkit.data import PreferenceDataset, PreferencePair, load_preferences
from rewardkit.demo import demo_model_path
from rewardkit.errors import DataError, ModelError, RewardkitError
from rewardkit.models import BradleyTerryRM, DPOImplicitRM, EnsembleRM
from rewardkit.train import DPOTrainingConfig, RewardTrainingConfig, train_dpo, train_reward_model

__all__ = [
    "BradleyTerryRM",
    "DPOImplicitRM",
    "DPOTrainingConfig",
    "DataError",
    "EnsembleRM",
    "ModelError",
    "PairScores",
    "PreferenceDataset",
    "PreferencePair",
    "RewardModel",
    "RewardTrainingConfig",
    "RewardkitError",
    "demo_model_path",
    "load_preferences",
    "load_reward_model",
    "pairwise_accuracy",
    "train_dpo",
    "train_reward_model",
]
