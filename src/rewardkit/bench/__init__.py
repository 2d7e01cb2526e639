"""Benchmarks: ``rewardkit bench shift`` (EXRM vs DPORM, WARM and ensembles under distribution shift)
and ``rewardkit bench hacking`` (reward over-optimisation under best-of-N against a gold reward).

Names are resolved on first use, so importing ``rewardkit.bench`` imports neither benchmark."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rewardkit.util import lazy_exports

_EXPORTS = {
    "PRESETS": "rewardkit.bench.shift_config",
    "BenchConfig": "rewardkit.bench.shift_config",
    "ShiftSpec": "rewardkit.bench.shift_config",
    "resolve_config": "rewardkit.bench.shift_config",
    "RECIPES": "rewardkit.bench.recipes",
    "load_recipe": "rewardkit.bench.recipes",
    "run_shift_benchmark": "rewardkit.bench.shift",
    "ShiftSplits": "rewardkit.bench.splits",
    "make_shift_splits": "rewardkit.bench.splits",
    "HACKING_PRESETS": "rewardkit.bench.hacking_config",
    "HackingConfig": "rewardkit.bench.hacking_config",
    "resolve_hacking_config": "rewardkit.bench.hacking_config",
    "run_hacking_benchmark": "rewardkit.bench.hacking",
}

__all__ = [
    "HACKING_PRESETS",
    "PRESETS",
    "RECIPES",
    "BenchConfig",
    "HackingConfig",
    "ShiftSpec",
    "ShiftSplits",
    "load_recipe",
    "make_shift_splits",
    "resolve_config",
    "resolve_hacking_config",
    "run_hacking_benchmark",
    "run_shift_benchmark",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from rewardkit.bench.hacking import run_hacking_benchmark
    from rewardkit.bench.hacking_config import HACKING_PRESETS, HackingConfig, resolve_hacking_config
    from rewardkit.bench.recipes import RECIPES, load_recipe
    from rewardkit.bench.shift import run_shift_benchmark
    from rewardkit.bench.shift_config import PRESETS, BenchConfig, ShiftSpec, resolve_config
    from rewardkit.bench.splits import ShiftSplits, make_shift_splits
