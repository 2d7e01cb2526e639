"""WARM weight averaging: exact, streaming merges of full and LoRA reward models; LMC tools; recipes."""

from rewardkit.merge.average import normalize_weights, weight_average
from rewardkit.merge.warm import corrupt_labels, interpolate, lmc_curve, train_warm

__all__ = ["corrupt_labels", "interpolate", "lmc_curve", "normalize_weights", "train_warm", "weight_average"]
