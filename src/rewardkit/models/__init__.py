"""Reward model kinds; importing this package registers them with ``load_reward_model``."""

from rewardkit.models.explicit import BradleyTerryRM

__all__ = ["BradleyTerryRM"]
