"""Benchmarks: ``rewardkit bench shift`` (EXRM vs DPORM, WARM and ensembles under distribution shift)."""

from rewardkit.bench.config import PRESETS, BenchConfig, ShiftSpec, resolve_config
from rewardkit.bench.recipes import RECIPES, load_recipe
from rewardkit.bench.shift import run_shift_benchmark
from rewardkit.bench.splits import ShiftSplits, make_shift_splits

__all__ = [
    "PRESETS",
    "RECIPES",
    "BenchConfig",
    "ShiftSpec",
    "ShiftSplits",
    "load_recipe",
    "make_shift_splits",
    "resolve_config",
    "run_shift_benchmark",
]
