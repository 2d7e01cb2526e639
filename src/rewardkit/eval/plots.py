"""matplotlib figures (PNG, written atomically): ID vs OOD bars, reliability diagram, LMC and BoN curves."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    from rewardkit.io import atomic_file

    with atomic_file(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")


def plot_accuracy_bars(report, path: str | os.PathLike) -> None:
    plt = _figure()
    names, splits = list(report.models), report.splits
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(splits) + 2), 3.6))
    x = np.arange(len(splits))
    for i, name in enumerate(names):
        rows = [report.models[name]["splits"][s] for s in splits]
        acc = np.array([r["accuracy"] for r in rows])
        err = np.array(
            [[r["accuracy"] - r["ci_low"] for r in rows], [r["ci_high"] - r["accuracy"] for r in rows]]
        )
        ax.bar(x + (i - (len(names) - 1) / 2) * width, acc, width, yerr=err, capsize=3, label=name)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [f"{s}\n(ID)" if s == report.id_split else s for s in splits])
    ax.set_ylabel(f"pairwise accuracy (ties: {report.ties})")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    plt.close(fig)


def plot_reliability(
    margins: np.ndarray, path: str | os.PathLike, n_bins: int = 10, temperature: float = 1.0
) -> None:
    from rewardkit.eval.metrics import expected_calibration_error, reliability_curve

    plt = _figure()
    conf, acc, counts = reliability_curve(margins, n_bins, temperature)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0.5, 1], [0.5, 1], color="grey", ls="--", lw=0.8)
    ok = counts > 0
    ax.plot(conf[ok], acc[ok], "o-")
    ax.set_xlabel("confidence max(p, 1-p)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE {expected_calibration_error(margins, n_bins, temperature):.3f} (T={temperature:.2f})")
    _save(fig, path)
    plt.close(fig)


def plot_curve(
    xs: Sequence[float], series: dict[str, Sequence[float]], path: str | os.PathLike, xlabel: str, ylabel: str
) -> None:
    """Generic line plot, e.g. LMC (lambda vs accuracy) or BoN (KL vs gold reward)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, ys in series.items():
        ax.plot(xs, ys, "o-", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
