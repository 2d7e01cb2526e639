"""Deprecated (0.2) name of :mod:`rewardkit.eval.evaluator` (the accuracy-under-shift evaluator; the
shift *benchmark* is :mod:`rewardkit.bench.shift`)."""

from rewardkit.eval.evaluator import *  # noqa: F403
from rewardkit.eval.evaluator import report_from_correctness  # noqa: F401
