"""Reward model kinds, listed in :mod:`rewardkit.models.registry` (kind -> class path, and the loader);
the names here are resolved on first use, so importing this package imports no torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rewardkit.util import lazy_exports

_EXPORTS = {
    "BradleyTerryRM": "rewardkit.models.explicit",
    "DPOImplicitRM": "rewardkit.models.implicit",
    "EnsembleRM": "rewardkit.models.ensemble",
    "LengthPenalizedRM": "rewardkit.models.length",
    "RemoteRewardModel": "rewardkit.models.remote",
}

__all__ = ["BradleyTerryRM", "DPOImplicitRM", "EnsembleRM", "LengthPenalizedRM", "RemoteRewardModel"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from rewardkit.models.ensemble import EnsembleRM
    from rewardkit.models.explicit import BradleyTerryRM
    from rewardkit.models.implicit import DPOImplicitRM
    from rewardkit.models.length import LengthPenalizedRM
    from rewardkit.models.remote import RemoteRewardModel
