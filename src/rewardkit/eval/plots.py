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


#: the card's figure: inches per suite panel, inches per model row, dots per inch (the PNG's size follows)
CARD_PANEL_WIDTH, CARD_ROW_HEIGHT, CARD_BASE_HEIGHT, CARD_DPI = 2.4, 0.4, 1.2, 100


def card_png_size(n_suites: int, n_models: int) -> tuple[int, int]:
    """(width, height) in pixels of :func:`plot_card`'s PNG."""
    width = CARD_PANEL_WIDTH * n_suites
    height = CARD_BASE_HEIGHT + CARD_ROW_HEIGHT * n_models
    return round(width * CARD_DPI), round(height * CARD_DPI)


def plot_card(table: dict[str, dict[str, dict]], titles: dict[str, str], path: str | os.PathLike) -> None:
    """One panel per suite, one row per model: the headline score (dot) and its 95% CI (bar), in %.

    ``table``: {model: {suite: {"score", "ci": [lo, hi]}}} (a NaN score leaves its row empty)."""
    plt = _figure()
    models = list(table)
    suites = list(next(iter(table.values())))
    width, height = card_png_size(len(suites), len(models))
    fig, axes = plt.subplots(
        1, len(suites), figsize=(width / CARD_DPI, height / CARD_DPI), sharey=True, squeeze=False
    )
    y = np.arange(len(models))[::-1]
    for ax, suite in zip(axes[0], suites):
        for yi, m in zip(y, models):
            cell = table[m][suite]
            score, (lo, hi) = 100 * cell["score"], (100 * cell["ci"][0], 100 * cell["ci"][1])
            ax.errorbar([score], [yi], xerr=[[score - lo], [hi - score]], fmt="o", ms=4, capsize=3)
        ax.set_title(titles.get(suite, suite), fontsize=9)
        ax.set_xlim(0, 100)
        ax.axvline(50, color="grey", lw=0.6, ls=":")
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(y, models)
    axes[0][0].set_ylim(-0.7, len(models) - 0.3)
    fig.supxlabel("score, % (95% bootstrap CI)", fontsize=8)
    fig.subplots_adjust(left=min(0.4, 0.9 / len(suites)), right=0.98, bottom=0.3, top=0.8, wspace=0.15)
    from rewardkit.io import atomic_file

    with atomic_file(path, suffix=".png") as tmp:  # a fixed size: no tight bounding box
        fig.savefig(tmp, dpi=CARD_DPI, format="png")
    plt.close(fig)
