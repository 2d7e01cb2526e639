"""Reward model kinds; importing this package registers them with ``load_reward_model``."""

from rewardkit.models.ensemble import EnsembleRM
from rewardkit.models.explicit import BradleyTerryRM
from rewardkit.models.implicit import DPOImplicitRM
from rewardkit.models.length import LengthPenalizedRM
from rewardkit.models.remote import RemoteRewardModel

__all__ = ["BradleyTerryRM", "DPOImplicitRM", "EnsembleRM", "LengthPenalizedRM", "RemoteRewardModel"]
