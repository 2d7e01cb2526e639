"""The benchmark suites ``rewardkit eval --suite NAME`` runs, by name: RewardBench 1 and 2
(:mod:`rewardkit.eval.suites`), the report-card suites (:mod:`rewardkit.eval.bench_report` with a
:class:`~rewardkit.eval.bench_data.BenchSpec` each) and the card (:mod:`rewardkit.eval.card`).

Each entry loads its data (``load(data, on_error)``: a local file in the official layout, or None for the
official source) before any model is loaded, then runs (``run(rms, loaded, n_boot=..., seed=...)``) and
returns a report with ``to_json``, ``to_jsonl``, ``to_markdown`` and an ``extra`` dict.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: report-card suite -> (module, BenchSpec attribute)
BENCH_SPECS: dict[str, tuple[str, str]] = {
    "rm-bench": ("rewardkit.eval.rmbench", "RM_BENCH"),
    "judgebench": ("rewardkit.eval.judgebench", "JUDGEBENCH"),
    "ppe-preference": ("rewardkit.eval.ppe", "PPE_PREFERENCE"),
    "ppe-correctness": ("rewardkit.eval.ppe", "PPE_CORRECTNESS"),
    "rmb": ("rewardkit.eval.rmb", "RMB"),
}
#: every suite name, in the card's order
SUITE_NAMES: tuple[str, ...] = ("rewardbench", "rewardbench2", *BENCH_SPECS)


def get_bench(name: str):
    """The :class:`~rewardkit.eval.bench_data.BenchSpec` of a report-card suite."""
    if name not in BENCH_SPECS:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(BENCH_SPECS)}")
    module, attr = BENCH_SPECS[name]
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class SuiteRunner:
    name: str
    load: Callable[[Any, str], Any]
    run: Callable[..., Any]


def _rewardbench(name: str) -> SuiteRunner:
    def load(data: Any, on_error: str):
        from rewardkit.eval.suite_data import load_suite

        return load_suite(name, data, on_error=on_error)

    def run(rms, loaded, *, n_boot: int = 2000, seed: int = 0):
        from rewardkit.eval.suites import run_suite

        return run_suite(rms, name, loaded, n_boot=n_boot, seed=seed)

    return SuiteRunner(name, load, run)


def _bench(name: str) -> SuiteRunner:
    def load(data: Any, on_error: str):
        from rewardkit.eval.bench_data import load_bench

        return load_bench(get_bench(name), data, on_error=on_error)

    def run(rms, loaded, *, n_boot: int = 2000, seed: int = 0):
        from rewardkit.eval.bench_report import run_bench

        return run_bench(rms, get_bench(name), loaded, n_boot=n_boot, seed=seed)

    return SuiteRunner(name, load, run)


RUNNERS: dict[str, SuiteRunner] = {
    "rewardbench": _rewardbench("rewardbench"),
    "rewardbench2": _rewardbench("rewardbench2"),
    **{name: _bench(name) for name in BENCH_SPECS},
}


def get_runner(name: str) -> SuiteRunner:
    if name not in RUNNERS:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(RUNNERS)}")
    return RUNNERS[name]
