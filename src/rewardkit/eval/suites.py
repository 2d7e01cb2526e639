"""RewardBench and RewardBench 2 runs: every model scores all the suite's (prompt, completion) rows in
one engine call, then the official scoring (``rewardkit.eval.rewardbench``) and bootstrap CIs; the
report writes the summary (JSON), the per-example rewards (JSONL) and a leaderboard table (Markdown).

A model whose ``score_columns`` reports a ``std`` column (an ensemble: the std of its members' rewards)
has it reported too: per completion in the JSONL, as means per subset and overall in the summary and
the table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rewardkit.accuracy import check_finite
from rewardkit.base import RewardModel
from rewardkit.data import SkippedRecord
from rewardkit.errors import ModelError
from rewardkit.eval.rewardbench import (
    V1_SECTIONS,
    SuiteScores,
    scores_from_values,
    suite_intervals,
    v1_subset_values,
    v2_subset_values,
)
from rewardkit.eval.suite_data import SuiteData, SuiteExample, load_suite
from rewardkit.records import PreferencePair
from rewardkit.templating import Texts

SUITE_TITLES = {"rewardbench": "RewardBench", "rewardbench2": "RewardBench 2"}


def suite_texts(data: SuiteData) -> Texts:
    """Every (prompt, completion) of the suite as one :class:`Texts`. v1: the chosen responses, then
    the rejected ones, as pairs (each pair's two sequences share one response boundary, as
    ``rewardkit score`` encodes them); v2: each prompt's completions in the dataset's order."""
    ex = data.examples
    if data.suite == "rewardbench":
        return Texts.from_pairs([PreferencePair(e.prompt, *e.completions, e.metadata) for e in ex])
    rows = [(e, c) for e in ex for c in e.completions]
    return Texts([e.prompt for e, _ in rows], [c for _, c in rows], metadata=[e.metadata for e, _ in rows])


def _per_example(flat: np.ndarray, data: SuiteData) -> list[np.ndarray]:
    """[N] rewards in :func:`suite_texts` order -> one array per example, in the dataset's order."""
    if data.suite == "rewardbench":
        n = len(data)
        return [np.array([flat[i], flat[n + i]]) for i in range(n)]
    ends = np.cumsum([len(e.completions) for e in data.examples])
    return np.split(flat, ends[:-1])


def score_suite(rm: RewardModel, data: SuiteData, texts: Texts | None = None):
    """One engine call (``rm.score_columns``): (per-example rewards, per-example member std or None
    when the model reports none), each a list of [k_i] float arrays in the dataset's order."""
    texts = suite_texts(data) if texts is None else texts
    rewards, columns = rm.score_columns(texts)
    rewards = check_finite(rewards, "suite rewards")
    std = columns.get("std")
    return _per_example(rewards, data), None if std is None else _per_example(np.asarray(std), data)


def subset_values(data: SuiteData, scores: list[np.ndarray]) -> dict:
    """{subset: per-example credit or the Ties table} from per-example rewards ([k_i] each, in the
    dataset's order), for :func:`~rewardkit.eval.rewardbench.scores_from_values` and the CIs."""
    subsets = [e.subset for e in data.examples]
    if data.suite == "rewardbench":
        s = np.stack(scores)
        return v1_subset_values(subsets, s[:, 0], s[:, 1])
    return v2_subset_values(
        subsets, [str(e.id) for e in data.examples], scores, [e.num_correct for e in data.examples]
    )


@dataclass
class SuiteReport:
    """One suite run over several models. ``scores[name]``: :class:`SuiteScores`; ``intervals[name]``:
    95% bootstrap CIs (``{"subsets", "sections", "score"}``); ``rewards[name]``: per-example reward
    arrays in the dataset's order; ``std[name]``: the same for an ensemble's member std."""

    suite: str
    data: SuiteData
    scores: dict[str, SuiteScores]
    intervals: dict[str, dict[str, Any]]
    rewards: dict[str, list[np.ndarray]]
    std: dict[str, list[np.ndarray]]
    n_boot: int
    #: what the caller records beside the scores (the CLI: the dtype models were scored in)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def examples(self) -> list[SuiteExample]:
        return self.data.examples

    @property
    def skipped(self) -> list[SkippedRecord]:
        return self.data.skipped

    def uncertainty(self, name: str) -> dict[str, Any] | None:
        """An ensemble's mean member std per subset and over every completion (None for other models)."""
        if name not in self.std:
            return None
        by_subset: dict[str, list[np.ndarray]] = {}
        for e, s in zip(self.examples, self.std[name]):
            by_subset.setdefault(e.subset, []).append(s)
        return {
            "subsets": {k: float(np.concatenate(by_subset[k]).mean()) for k in self.data.subsets},
            "score": float(np.concatenate(self.std[name]).mean()),
        }

    def to_dict(self) -> dict[str, Any]:
        models = {}
        for name, s in self.scores.items():
            m: dict[str, Any] = {"subsets": s.subsets}
            if self.suite == "rewardbench":
                m["sections"] = s.sections
            m.update(score=s.score, ci=self.intervals[name], counts=s.counts)
            if name in self.std:
                m["uncertainty"] = self.uncertainty(name)
            models[name] = m
        return {
            "suite": self.suite,
            "data": self.data.source,
            "examples": len(self.examples),
            "skipped": [{"location": s.location, "reason": s.reason} for s in self.skipped],
            "missing_subsets": self.data.missing,
            "n_boot": self.n_boot,
            "models": models,
            **self.extra,
        }

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        from rewardkit.io import atomic_write_text, dumps

        text = dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def jsonl_rows(self) -> list[dict[str, Any]]:
        """One row per model and example: ``model``, ``id``, ``subset``, ``scores`` (dataset order),
        ``num_correct`` (v2) and ``std`` (ensembles)."""
        rows = []
        for name, rewards in self.rewards.items():
            std = self.std.get(name)
            for i, (e, r) in enumerate(zip(self.examples, rewards)):
                row: dict[str, Any] = {"model": name, "id": e.id, "subset": e.subset, "scores": r.tolist()}
                if self.suite == "rewardbench2":
                    row["num_correct"] = e.num_correct
                if std is not None:
                    row["std"] = std[i].tolist()
                rows.append(row)
        return rows

    def to_jsonl(self, path: str | os.PathLike) -> None:
        from rewardkit.io import atomic_write_text, dumps

        atomic_write_text(path, "".join(dumps(row) + "\n" for row in self.jsonl_rows()))

    def to_markdown(self) -> str:
        """A leaderboard (models by overall score; v1 sections / v2 subsets in %, ensembles' mean member
        std), then each subset's score with its 95% CI and size, and what is missing or skipped."""
        groups = list(V1_SECTIONS) if self.suite == "rewardbench" else list(self.data.subsets)
        shown = [g for g in groups if any(g in self._group(s) for s in self.scores.values())]
        has_std = bool(self.std)
        head = ["Model", "Score", *shown] + (["Uncertainty (member std)"] if has_std else [])
        lines = [f"## {SUITE_TITLES[self.suite]}", "", _row(head), "|" + "---|" * len(head)]
        for name, s in sorted(self.scores.items(), key=lambda kv: -kv[1].score):
            cells = [name, _pct(s.score)] + [
                _pct(self._group(s)[g]) if g in self._group(s) else "" for g in shown
            ]
            if has_std:
                u = self.uncertainty(name)
                cells.append(f"{u['score']:.4f}" if u else "")
            lines.append(_row(cells))
        names = list(self.scores)
        lines += ["", _row(["Subset", "n", *names]), "|" + "---|" * (len(names) + 2)]
        for subset in self.data.subsets:
            cells = [subset, str(next(iter(self.scores.values())).counts[subset])]
            for name in names:
                lo, hi = self.intervals[name]["subsets"][subset]
                cells.append(f"{_pct(self.scores[name].subsets[subset])} [{_pct(lo)}, {_pct(hi)}]")
            lines.append(_row(cells))
        lines.append("")
        lines.append(
            f"Scores in %, 95% bootstrap CIs over {self.n_boot} resamples; data: {self.data.source}."
        )
        if self.data.missing:
            lines.append(
                f"Missing subsets ({len(self.data.missing)}): {', '.join(self.data.missing)}; sections and the "
                "overall score average the subsets present, so they are not leaderboard numbers."
            )
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} malformed row(s); first: {self.skipped[0].reason}")
        return "\n".join(lines) + "\n"

    def _group(self, s: SuiteScores) -> dict[str, float]:
        return s.sections if self.suite == "rewardbench" else s.subsets


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def run_suite(
    rms: Mapping[str, RewardModel],
    suite: str,
    data: Any = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    on_error: Literal["raise", "skip"] = "raise",
) -> SuiteReport:
    """RewardBench (``suite="rewardbench"``) or RewardBench 2 (``"rewardbench2"``) for several models.

    Args:
        rms: {name: reward model}, any kind (explicit, DPO implicit, merged, ensemble, length-penalised,
            remote).
        suite: ``"rewardbench"`` or ``"rewardbench2"``.
        data: a :class:`SuiteData`, or anything :func:`load_suite` reads (a local file in the official
            layout; None: the official hub dataset).
        n_boot: bootstrap resamples per subset for the CIs.
        seed: the bootstrap's seed.
        on_error: ``"skip"`` counts malformed rows (``report.skipped``) instead of raising.

    Returns:
        A :class:`SuiteReport`.
    """
    if not rms:
        raise ValueError("run_suite needs at least one reward model")
    if not isinstance(data, SuiteData):
        data = load_suite(suite, data, on_error=on_error)
    elif data.suite != suite:
        raise ValueError(f"data holds {data.suite!r} examples, not {suite!r}")
    texts = suite_texts(data)
    scores, intervals, rewards, stds = {}, {}, {}, {}
    for name, rm in rms.items():
        try:
            per_example, std = score_suite(rm, data, texts)
        except ModelError as e:
            raise ModelError(f"{name}: {e}") from None
        rewards[name] = per_example
        if std is not None:
            stds[name] = std
        values = subset_values(data, per_example)
        scores[name] = scores_from_values(values, sections=suite == "rewardbench")
        intervals[name] = suite_intervals(values, sections=suite == "rewardbench", n_boot=n_boot, seed=seed)
    return SuiteReport(suite, data, scores, intervals, rewards, stds, n_boot)
