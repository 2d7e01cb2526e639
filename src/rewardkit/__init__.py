"""rewardkit: reward models for RLHF.

Public names are re-exported here and resolved on first use, so ``import rewardkit`` (and the
``rewardkit`` command's start-up) imports neither torch nor transformers; see docs/ for guides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rewardkit.util import lazy_exports
from rewardkit.version import __version__ as __version__

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "PairScores": "rewardkit.base",
    "RewardModel": "rewardkit.base",
    "load_reward_model": "rewardkit.models.registry",
    "load_ensemble": "rewardkit.models.registry",
    "pairwise_accuracy": "rewardkit.accuracy",
    "Texts": "rewardkit.templating",
    "EnsembleScores": "rewardkit.models.ensemble",
    "PenalizedScores": "rewardkit.models.length",
    "register_kind": "rewardkit.models.registry",
    "PreferenceDataset": "rewardkit.data",
    "PreferencePair": "rewardkit.records",
    "load_preferences": "rewardkit.data",
    "demo_model_path": "rewardkit.demo",
    "DataError": "rewardkit.errors",
    "ModelError": "rewardkit.errors",
    "RewardkitError": "rewardkit.errors",
    "BradleyTerryRM": "rewardkit.models.explicit",
    "DPOImplicitRM": "rewardkit.models.implicit",
    "EnsembleRM": "rewardkit.models.ensemble",
    "LengthPenalizedRM": "rewardkit.models.length",
    "RemoteRewardModel": "rewardkit.models.remote",
    "ElasticResetCallback": "rewardkit.train.elastic",
    "DPOTrainingConfig": "rewardkit.train.config",
    "RewardTrainingConfig": "rewardkit.train.config",
    "train_dpo": "rewardkit.train.dpo",
    "train_reward_model": "rewardkit.train.bradley_terry",
}

__all__ = [
    "BradleyTerryRM",
    "DPOImplicitRM",
    "DPOTrainingConfig",
    "DataError",
    "ElasticResetCallback",
    "EnsembleRM",
    "EnsembleScores",
    "LengthPenalizedRM",
    "ModelError",
    "PairScores",
    "PenalizedScores",
    "PreferenceDataset",
    "PreferencePair",
    "RemoteRewardModel",
    "RewardModel",
    "RewardTrainingConfig",
    "RewardkitError",
    "Texts",
    "demo_model_path",
    "load_ensemble",
    "load_preferences",
    "load_reward_model",
    "pairwise_accuracy",
    "register_kind",
    "train_dpo",
    "train_reward_model",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # for type checkers and IDEs: the names as ordinary imports
    from rewardkit.accuracy import pairwise_accuracy
    from rewardkit.base import PairScores, RewardModel
    from rewardkit.data import PreferenceDataset, load_preferences
    from rewardkit.demo import demo_model_path
    from rewardkit.errors import DataError, ModelError, RewardkitError
    from rewardkit.models.ensemble import EnsembleRM, EnsembleScores
    from rewardkit.models.explicit import BradleyTerryRM
    from rewardkit.models.implicit import DPOImplicitRM
    from rewardkit.models.length import LengthPenalizedRM, PenalizedScores
    from rewardkit.models.registry import load_ensemble, load_reward_model, register_kind
    from rewardkit.models.remote import RemoteRewardModel
    from rewardkit.records import PreferencePair
    from rewardkit.templating import Texts
    from rewardkit.train.bradley_terry import train_reward_model
    from rewardkit.train.config import DPOTrainingConfig, RewardTrainingConfig
    from rewardkit.train.dpo import train_dpo
    from rewardkit.train.elastic import ElasticResetCallback
