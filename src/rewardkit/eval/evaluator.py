"""ID / OOD evaluation of several reward models over named splits, with CIs, seeds and paired tests."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rewardkit.accuracy import TiePolicy, correctness
from rewardkit.base import RewardModel
from rewardkit.data import PreferenceDataset, as_pairs
from rewardkit.eval.metrics import bootstrap_ci, paired_bootstrap_test
from rewardkit.templating import Texts


@dataclass
class EvalReport:
    """Accuracy per model x split. ``models[name]["splits"][split]`` holds ``n``, ``accuracy``, ``ci_low``,
    ``ci_high`` (95% bootstrap over pairs) and, with several seeds, ``std`` and ``seeds``;
    ``models[name]`` also holds ``id``, ``ood_mean`` and ``drop`` (= id - ood_mean)."""

    ties: str
    id_split: str | None
    splits: list[str]
    models: dict[str, dict[str, Any]]
    paired_tests: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: per split: mean length of chosen and rejected responses and the unit, when measured
    lengths: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ties": self.ties,
            "id_split": self.id_split,
            "splits": self.splits,
            "models": self.models,
            "paired_tests": self.paired_tests,
            **({"lengths": self.lengths} if self.lengths else {}),
            **self.extra,
        }

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        from rewardkit.io import atomic_write_text, dumps

        text = dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_markdown(self) -> str:
        """One row per model, one column per split (accuracy [95% CI]), then ID, mean OOD and the drop."""
        head = ["model"] + self.splits + (["ID", "mean OOD", "drop"] if self.id_split else [])
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, m in self.models.items():
            cells = [name]
            for s in self.splits:
                r = m["splits"][s]
                std = f" ± {r['std']:.3f}" if "std" in r else ""
                cells.append(f"{r['accuracy']:.3f}{std} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
            if self.id_split:
                ood = "n/a" if m["ood_mean"] is None else f"{m['ood_mean']:.3f}"
                drop = "n/a" if m["drop"] is None else f"{m['drop']:+.3f}"
                cells += [f"{m['id']:.3f}", ood, drop]
            lines.append("| " + " | ".join(cells) + " |")
        note = f"\nAccuracy with ties counted as '{self.ties}'; 95% bootstrap CIs over pairs."
        if self.lengths:
            unit = next(iter(self.lengths.values()))["unit"]
            note += (
                f"\n\nLength bias: share of pairs (responses of different lengths, in {unit}) where the model "
                "prefers the longer response (0.5: none).\n\n| model | "
                + " | ".join(self.splits)
                + " |\n|"
                + "---|" * (len(self.splits) + 1)
            )
            mean = " | ".join(
                f"{self.lengths[s]['chosen']:.1f} / {self.lengths[s]['rejected']:.1f}" for s in self.splits
            )
            note += f"\n| mean length chosen / rejected | {mean} |"
            for name, m in self.models.items():
                cells = [m["splits"][s].get("prefers_longer") for s in self.splits]
                note += (
                    f"\n| {name} | " + " | ".join("n/a" if c is None else f"{c:.3f}" for c in cells) + " |"
                )
        if self.paired_tests:
            note += "\n\n| A | B | split | acc(A) - acc(B) | p (paired bootstrap) |\n|---|---|---|---|---|"
            for t in self.paired_tests:
                note += f"\n| {t['a']} | {t['b']} | {t['split']} | {t['diff']:+.3f} | {t['p_value']:.3g} |"
        return "\n".join(lines) + "\n" + note + "\n"

    def plot(self, path: str | os.PathLike) -> None:
        """PNG: accuracy per split and model with 95% CI error bars."""
        from rewardkit.eval.plots import plot_accuracy_bars

        plot_accuracy_bars(self, path)


def _as_members(rm: RewardModel | Sequence[RewardModel]) -> list[RewardModel]:
    return [rm] if isinstance(rm, RewardModel) else list(rm)


def evaluate(
    rms: Mapping[str, RewardModel | Sequence[RewardModel]],
    splits: Mapping[str, Any],
    *,
    id_split: str | None = "id",
    ties: TiePolicy = "half",
    n_boot: int = 2000,
    seed: int = 0,
    compare: Sequence[tuple[str, str]] | None = None,
    length_unit: str = "words",
    tokenizer=None,
) -> EvalReport:
    """Evaluate reward models on named splits of preference pairs.

    ``rms``: name -> a reward model, or a list of the same model trained with several seeds (reported
    as mean ± std across seeds; CIs and tests use the seed-averaged per-pair correctness).
    ``splits``: name -> pairs (anything ``load_preferences`` takes). ``id_split`` names the
    in-distribution split; every other split counts as OOD for ``ood_mean`` and ``drop``.
    ``compare``: model pairs for the paired bootstrap test on each split (default: every pair of models).
    Each split also gets the mean response lengths (``length_unit``: words, chars, or tokens with
    ``tokenizer``) and each model its length bias, the share of pairs where it prefers the longer
    response (:func:`~rewardkit.eval.metrics.length_bias`).
    """
    from rewardkit.eval.metrics import length_bias
    from rewardkit.templating import text_length

    split_pairs: dict[str, PreferenceDataset] = {k: as_pairs(v) for k, v in splits.items()}
    if id_split is not None and id_split not in split_pairs:
        raise ValueError(f"id_split {id_split!r} is not one of the splits {list(split_pairs)}")
    lengths = {
        split: (
            text_length([p.chosen for p in pairs], length_unit, tokenizer),
            text_length([p.rejected for p in pairs], length_unit, tokenizer),
        )
        for split, pairs in split_pairs.items()
    }
    margins = {
        name: {split: [] for split in split_pairs} for name in rms
    }  # each distinct model scored once per split; one built on another (a length penalty) reuses its rewards
    # models made of others after the plain ones, so what they build on is known first
    order = sorted(rms.items(), key=lambda kv: any(m.members for m in _as_members(kv[1])))
    for split, pairs in split_pairs.items():
        texts = Texts.from_pairs(pairs)
        known: dict[int, np.ndarray] = {}
        for name, rm in order:
            for m in _as_members(rm):
                r = m.score_texts_reusing(texts, known)
                known[id(m)] = r
                chosen, rejected = texts.split_pairs(r)
                margins[name][split].append(chosen - rejected)
    per_seed = {
        name: {split: np.stack([correctness(m, ties) for m in ms]) for split, ms in by_split.items()}
        for name, by_split in margins.items()
    }
    report = report_from_correctness(
        per_seed, id_split=id_split, ties=ties, n_boot=n_boot, seed=seed, compare=compare
    )
    for name, by_split in margins.items():
        for split, ms in by_split.items():
            biases = [length_bias(m, *lengths[split]) for m in ms]
            known = [b for b in biases if b is not None]
            report.models[name]["splits"][split]["prefers_longer"] = float(np.mean(known)) if known else None
    report.lengths = {
        split: {"chosen": float(c.mean()), "rejected": float(r.mean()), "unit": length_unit}
        for split, (c, r) in lengths.items()
    }
    return report


def report_from_correctness(
    per_seed: Mapping[str, Mapping[str, np.ndarray]],
    *,
    id_split: str | None = "id",
    ties: TiePolicy = "half",
    n_boot: int = 2000,
    seed: int = 0,
    compare: Sequence[tuple[str, str]] | None = None,
) -> EvalReport:
    """The report of :func:`evaluate` from per-pair credit already computed (e.g. from cached scores).

    ``per_seed[name][split]``: array ``[S, n]`` (or ``[n]``) of per-pair credit in {0, 1/2, 1} (see
    :func:`~rewardkit.accuracy.correctness`), one row per seed. Every model must cover the same
    splits with the same ``n``.
    """
    names = list(per_seed)
    if not names:
        raise ValueError("no models to report")
    splits = list(per_seed[names[0]])
    if id_split is not None and id_split not in splits:
        raise ValueError(f"id_split {id_split!r} is not one of the splits {splits}")
    credit: dict[str, dict[str, np.ndarray]] = {}
    models: dict[str, dict[str, Any]] = {}
    for name in names:
        if list(per_seed[name]) != splits:
            raise ValueError(f"model {name!r} has splits {list(per_seed[name])}, expected {splits}")
        credit[name] = {}
        models[name] = {"splits": {}}
        for split in splits:
            rows = np.atleast_2d(np.asarray(per_seed[name][split], dtype=np.float64))  # [S, n]
            n_ref = np.atleast_2d(per_seed[names[0]][split]).shape[1]
            if rows.shape[1] != n_ref:
                raise ValueError(f"model {name!r}, split {split!r}: {rows.shape[1]} pairs, expected {n_ref}")
            avg = rows.mean(axis=0)
            lo, hi = bootstrap_ci(avg, n_boot=n_boot, seed=seed)
            row: dict[str, Any] = {
                "n": int(rows.shape[1]),
                "accuracy": float(avg.mean()),
                "ci_low": lo,
                "ci_high": hi,
            }
            if rows.shape[0] > 1:
                accs = rows.mean(axis=1)
                row.update(std=float(accs.std(ddof=1)), seeds=[float(a) for a in accs])
            models[name]["splits"][split] = row
            models[name]["seeds"] = int(rows.shape[0])
            credit[name][split] = avg
        if id_split is not None:
            ood = [s for s in splits if s != id_split]
            acc_id = models[name]["splits"][id_split]["accuracy"]
            ood_mean = float(np.mean([models[name]["splits"][s]["accuracy"] for s in ood])) if ood else None
            models[name].update(
                id=acc_id, ood_mean=ood_mean, drop=None if ood_mean is None else acc_id - ood_mean
            )
    tests = []
    for a, b in compare if compare is not None else itertools.combinations(names, 2):
        for split in splits:
            diff, p = paired_bootstrap_test(credit[a][split], credit[b][split], n_boot=n_boot, seed=seed)
            tests.append(
                {"a": a, "b": b, "split": split, "diff": diff, "p_value": p, "method": "paired_bootstrap"}
            )
    return EvalReport(ties=ties, id_split=id_split, splits=splits, models=models, paired_tests=tests)
