"""The reward-model report card: every suite of :mod:`rewardkit.eval.suite_registry` whose data is
available, for several models, in one table of headline scores with 95% CIs, each suite's own table
under it, and the suites skipped with the reason.

A suite's data is its local file when one is given (a bad file is an error, never a skip), else its
official hub source; a hub that cannot be reached (offline, no network) skips the suite with the
loader's one-line reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rewardkit.base import RewardModel
from rewardkit.errors import DataError
from rewardkit.eval.suite_registry import SUITE_NAMES, SuiteRunner, get_runner

TITLES = {
    "rewardbench": "RewardBench",
    "rewardbench2": "RewardBench 2",
    "rm-bench": "RM-Bench",
    "judgebench": "JudgeBench",
    "ppe-preference": "PPE Preference",
    "ppe-correctness": "PPE Correctness",
    "rmb": "RMB",
}


@dataclass
class CardData:
    """Each suite's loaded data (``loaded``) and the suites skipped, with why (``skipped``)."""

    loaded: dict[str, Any]
    skipped: dict[str, str]


def load_card(
    files: Mapping[str, Any] | None = None, *, on_error: Literal["raise", "skip"] = "raise"
) -> CardData:
    """Every suite's data: ``files[suite]`` when given (errors raise), else the hub (unreachable: skipped)."""
    files = dict(files or {})
    unknown = sorted(set(files) - set(SUITE_NAMES))
    if unknown:
        raise DataError(
            f"--suite-data: unknown suite(s) {', '.join(unknown)}; known: {', '.join(SUITE_NAMES)}"
        )
    loaded, skipped = {}, {}
    for name in SUITE_NAMES:
        runner = get_runner(name)
        if name in files:
            loaded[name] = runner.load(files[name], on_error)
            continue
        try:
            loaded[name] = runner.load(None, on_error)
        except DataError as e:
            skipped[name] = f"no --suite-data {name}=FILE and the official source is not available: {e}"
    if not loaded:
        raise DataError(
            "no suite data: give --suite-data SUITE=FILE (suites: " + ", ".join(SUITE_NAMES) + ")"
        )
    return CardData(loaded, skipped)


def headline(report: Any, name: str) -> tuple[float, tuple[float, float]]:
    """A model's overall score and its 95% CI from a RewardBench or a report-card suite report."""
    if hasattr(report, "points"):
        return report.points[name]["score"], tuple(report.intervals[name]["score"])
    return report.scores[name].score, tuple(report.intervals[name]["score"])


@dataclass
class Card:
    """The card: ``reports[suite]`` (each suite's report), ``skipped[suite]`` (why it did not run)."""

    reports: dict[str, Any]
    skipped: dict[str, str]
    n_boot: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        first = next(iter(self.reports.values()))
        return list(first.points if hasattr(first, "points") else first.scores)

    def table(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{model: {suite: {"score", "ci"}}}."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for m in self.models:
            out[m] = {}
            for suite, report in self.reports.items():
                score, ci = headline(report, m)
                out[m][suite] = {"score": score, "ci": list(ci)}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "card": self.table(),
            "suites": {s: r.to_dict() for s, r in self.reports.items()},
            "skipped_suites": self.skipped,
            "n_boot": self.n_boot,
            **self.extra,
        }

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        from rewardkit.io import atomic_write_text, dumps

        text = dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_jsonl(self, path: str | os.PathLike) -> None:
        """Every suite's per-example rows, each with its ``suite``."""
        from rewardkit.io import atomic_write_text, dumps

        rows = [{"suite": s, **row} for s, r in self.reports.items() for row in r.jsonl_rows()]
        atomic_write_text(path, "".join(dumps(row) + "\n" for row in rows))

    def to_png(self, path: str | os.PathLike) -> None:
        """The headline scores as dots with their 95% CIs: one panel per suite, one row per model
        (written atomically; size :func:`rewardkit.eval.plots.card_png_size`)."""
        from rewardkit.eval.plots import plot_card

        plot_card(self.table(), TITLES, path)

    def to_markdown(self) -> str:
        suites = list(self.reports)
        head = ["Model", *(TITLES[s] for s in suites)]
        lines = ["# Reward-model report card", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m, row in self.table().items():
            cells = [m] + [_cell(row[s]["score"], row[s]["ci"]) for s in suites]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Overall scores in %, 95% bootstrap CIs ({self.n_boot} resamples)."]
        for suite, why in self.skipped.items():
            lines.append(f"- skipped {TITLES[suite]}: {why}")
        return "\n".join(lines) + "\n\n" + "\n".join(r.to_markdown() for r in self.reports.values())


def _cell(x: float, ci: list[float]) -> str:
    return f"{100 * x:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def run_card(
    rms: Mapping[str, RewardModel],
    data: CardData | Mapping[str, Any] | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> Card:
    """Every available suite for several models (``data``: a :class:`CardData` or {suite: file})."""
    if not isinstance(data, CardData):
        data = load_card(data)
    reports = {
        s: get_runner(s).run(rms, loaded, n_boot=n_boot, seed=seed) for s, loaded in data.loaded.items()
    }
    return Card(reports, data.skipped, n_boot)


def _load(files: Any, on_error: str) -> CardData:
    return load_card(files, on_error=on_error)


CARD_RUNNER = SuiteRunner("card", _load, run_card)


def runner_for(name: str) -> SuiteRunner:
    """The runner of a suite of :data:`~rewardkit.eval.suite_registry.SUITE_NAMES`, or of ``"card"``."""
    return CARD_RUNNER if name == "card" else get_runner(name)
