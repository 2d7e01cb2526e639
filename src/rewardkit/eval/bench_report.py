"""Summaries, bootstrap CIs over prompts and paired tests for the report-card suites
(:mod:`rewardkit.eval.bench_data` reads and scores; each suite's module says how a summary is made).

A summary is ``spec.combine`` over the per-group means of the per-example credit ``spec.features``.
The CIs resample prompts with replacement (all groups together, so a prompt in two groups moves in
both) and apply the same ``combine`` to each resample; every model sees the same resamples (one seed),
so the difference of two models' resampled metrics is a paired bootstrap, from which each metric's
paired test (two-sided, shifted to the null, as :func:`rewardkit.eval.metrics.paired_bootstrap_test`)
is read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal

import numpy as np

from rewardkit.base import RewardModel
from rewardkit.eval.bench_data import BenchData, BenchSpec, load_bench, membership, score_models

BOOT_CHUNK_ELEMENTS = 2**21


def group_means(f: np.ndarray, m: np.ndarray, w: np.ndarray, groups: list[str]) -> dict[str, np.ndarray]:
    """{group: [B, F] means} of ``f`` ([n, F], NaN = not counted) over the members ``m`` [n, G] of each
    group, each example weighed by ``w`` ([B, n] resample counts); NaN where nothing counts."""
    valid = ~np.isnan(f)
    f0 = np.where(valid, f, 0.0)
    out = {}
    for j, g in enumerate(groups):
        mj = m[:, j : j + 1]
        num = w @ (f0 * mj)
        den = w @ (valid * mj)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[g] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def summarize(spec: BenchSpec, f: np.ndarray, m: np.ndarray, groups: list[str]) -> dict[str, float]:
    """The suite's metrics on the full data: ``spec.combine`` of the group means."""
    means = {g: v[0] for g, v in group_means(f, m, np.ones((1, len(f))), groups).items()}
    counts = {g: int(m[:, j].sum()) for j, g in enumerate(groups)}
    return {k: float(v) for k, v in spec.combine(means, counts).items()}


def bootstrap(
    spec: BenchSpec, f: np.ndarray, m: np.ndarray, groups: list[str], n_boot: int, seed: int
) -> dict[str, np.ndarray]:
    """{metric: [n_boot]} over prompts resampled with replacement (chunks of bounded memory; the draws
    depend only on n, ``n_boot`` and ``seed``)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    n = len(f)
    counts = {g: int(m[:, j].sum()) for j, g in enumerate(groups)}
    rng = np.random.default_rng(seed)
    rows = max(1, BOOT_CHUNK_ELEMENTS // max(n, 1))
    parts: list[dict[str, np.ndarray]] = []
    for lo in range(0, n_boot, rows):
        b = min(rows, n_boot - lo)
        idx = rng.integers(0, n, size=(b, n))
        w = np.bincount((np.arange(b)[:, None] * n + idx).ravel(), minlength=b * n).reshape(b, n)
        parts.append(spec.combine(group_means(f, m, w.astype(np.float64), groups), counts))
    return {k: np.concatenate([np.atleast_1d(p[k]) for p in parts]) for k in parts[0]}


def interval(boots: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    b = boots[~np.isnan(boots)]
    if not b.size:
        return float("nan"), float("nan")
    return float(np.quantile(b, alpha / 2)), float(np.quantile(b, 1 - alpha / 2))


def paired_p(diff: float, boot_diff: np.ndarray) -> float:
    """Two-sided paired bootstrap p-value of a difference ``diff`` from its resampled values (shifted
    to the null); never below 1 / (n + 1)."""
    b = boot_diff[~np.isnan(boot_diff)]
    extreme = int(np.sum(np.abs(b - diff) >= abs(diff) - 1e-12))
    return (extreme + 1) / (b.size + 1)


@dataclass
class BenchReport:
    """One suite over several models: ``points[name]`` {metric: value}, ``intervals[name]`` {metric:
    (lo, hi)} (95% bootstrap over prompts), ``tests``: paired tests between models per metric,
    ``rewards[name]``: per-example reward arrays in the dataset's order."""

    data: BenchData
    points: dict[str, dict[str, float]]
    intervals: dict[str, dict[str, tuple[float, float]]]
    tests: list[dict[str, Any]]
    rewards: dict[str, list[np.ndarray]]
    n_boot: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def suite(self) -> str:
        return self.data.spec.name

    def to_dict(self) -> dict[str, Any]:
        counts = {g: sum(g in e.groups for e in self.data.examples) for g in self.data.groups}
        return {
            "suite": self.suite,
            "data": self.data.source,
            "scoring_source": self.data.spec.scoring_source,
            "examples": len(self.data),
            "counts": counts,
            "skipped": [{"location": s.location, "reason": s.reason} for s in self.data.skipped],
            "missing_groups": self.data.missing,
            "n_boot": self.n_boot,
            "models": {
                name: {
                    "metrics": {k: _json_number(v) for k, v in p.items()},
                    "ci": {k: [_json_number(x) for x in v] for k, v in self.intervals[name].items()},
                }
                for name, p in self.points.items()
            },
            "paired_tests": self.tests,
            **self.extra,
        }

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        from rewardkit.io import atomic_write_text, dumps

        text = dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def jsonl_rows(self) -> list[dict[str, Any]]:
        """One row per model and example: ``model`` and the suite's per-example fields."""
        return [
            {"model": name, **self.data.spec.row(e, r)}
            for name, rewards in self.rewards.items()
            for e, r in zip(self.data.examples, rewards)
        ]

    def to_jsonl(self, path: str | os.PathLike) -> None:
        from rewardkit.io import atomic_write_text, dumps

        atomic_write_text(path, "".join(dumps(row) + "\n" for row in self.jsonl_rows()))

    def to_markdown(self) -> str:
        """Every metric per model with its 95% CI, the paired tests of the headline score, and what is
        missing or skipped."""
        names = list(self.points)
        metrics = list(next(iter(self.points.values())))
        lines = [f"## {self.data.spec.title}", "", _row(["Metric", *names]), "|" + "---|" * (len(names) + 1)]
        for k in metrics:
            lines.append(_row([k] + [_ci(self.points[n][k], self.intervals[n][k]) for n in names]))
        tests = [t for t in self.tests if t["metric"] == "score"]
        if tests:
            lines += ["", _row(["A", "B", "score A - B", "p"]), "|---|---|---|---|"]
            lines += [_row([t["a"], t["b"], f"{100 * t['diff']:+.1f}", f"{t['p']:.4f}"]) for t in tests]
        lines += [
            "",
            f"In %, 95% bootstrap CIs over prompts ({self.n_boot} resamples); data: {self.data.source}.",
        ]
        if self.data.missing:
            lines.append(
                f"Missing groups: {', '.join(self.data.missing)} (averages are over the groups present)."
            )
        if self.data.skipped:
            lines.append(
                f"Skipped {len(self.data.skipped)} malformed row(s); first: {self.data.skipped[0].reason}"
            )
        return "\n".join(lines) + "\n"


def _json_number(x: float) -> float | None:
    """NaN (a metric over no examples, e.g. pairs where none exist) is written as null."""
    return None if np.isnan(x) else x


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ci(x: float, ci: tuple[float, float]) -> str:
    if np.isnan(x):
        return "n/a"
    return f"{100 * x:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def report_from_rewards(
    data: BenchData, rewards: Mapping[str, list[np.ndarray]], *, n_boot: int = 2000, seed: int = 0
) -> BenchReport:
    """The report from per-example rewards (``rewards[name]``: one [k_i] array per example)."""
    spec, groups = data.spec, data.groups
    m = membership(data.examples, groups)
    points, intervals, boots = {}, {}, {}
    for name, r in rewards.items():
        f = np.asarray(spec.features(data.examples, list(r)), dtype=np.float64)
        points[name] = summarize(spec, f, m, groups)
        boots[name] = bootstrap(spec, f, m, groups, n_boot, seed)
        intervals[name] = {k: interval(boots[name][k]) for k in points[name]}
    tests = []
    for a, b in combinations(points, 2):
        for k in points[a]:
            diff = points[a][k] - points[b][k]
            if np.isnan(diff):
                continue
            tests.append(
                {"a": a, "b": b, "metric": k, "diff": diff, "p": paired_p(diff, boots[a][k] - boots[b][k])}
            )
    return BenchReport(data, points, intervals, tests, dict(rewards), n_boot)


def run_bench(
    rms: Mapping[str, RewardModel],
    spec: BenchSpec,
    data: Any = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    on_error: Literal["raise", "skip"] = "raise",
) -> BenchReport:
    """One report-card suite for several models (any kind: everything goes through ``score_columns``).

    Args:
        rms: {name: reward model}.
        spec: the suite (``rewardkit.eval.bench_registry.get_bench(name)``).
        data: a :class:`BenchData`, a local file in the official layout, rows, or None (the hub).
        n_boot, seed: bootstrap resamples over prompts and their seed.
        on_error: ``"skip"`` counts malformed rows instead of raising.
    """
    if not rms:
        raise ValueError("run_bench needs at least one reward model")
    if not isinstance(data, BenchData):
        data = load_bench(spec, data, on_error=on_error)
    return report_from_rewards(data, score_models(dict(rms), data), n_boot=n_boot, seed=seed)
