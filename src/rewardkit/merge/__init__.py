"""WARM weight averaging: exact, streaming merges of full and LoRA reward models; LMC tools.

Names are resolved on first use, so ``rewardkit.merge.config`` (the CLI's settings) imports nothing
else of the package."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rewardkit.util import lazy_exports

_EXPORTS = {
    "normalize_weights": "rewardkit.merge.average",
    "weight_average": "rewardkit.merge.average",
    "corrupt_labels": "rewardkit.merge.warm",
    "interpolate": "rewardkit.merge.warm",
    "lmc_curve": "rewardkit.merge.warm",
}
__all__ = ["corrupt_labels", "interpolate", "lmc_curve", "normalize_weights", "weight_average"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from rewardkit.merge.average import normalize_weights, weight_average
    from rewardkit.merge.warm import corrupt_labels, interpolate, lmc_curve
