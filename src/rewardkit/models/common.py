"""Deprecated home of the loading helpers: they live in :mod:`rewardkit.checkpoints` (a neutral module
below the model kinds, so ``base`` and ``merge`` need not import ``models``). Kept so 0.2 imports work."""

from rewardkit.checkpoints import *  # noqa: F403
