"""Pure metrics over reward arrays (per-pair correctness is :mod:`rewardkit.accuracy`'s): bootstrap CIs, paired tests, calibration,
agreement and selective accuracy. Inputs are numpy arrays; nothing here touches a model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

from rewardkit.accuracy import TiePolicy, check_finite, correctness

__all__ = [
    "bootstrap_ci",
    "paired_bootstrap_test",
    "mcnemar_test",
    "expected_calibration_error",
    "reliability_curve",
    "fit_temperature",
    "spearman_agreement",
    "top1_agreement",
    "selective_accuracy",
    "length_bias",
]


BOOT_CHUNK_ELEMENTS = 2**22  # resampled indices held at once (32 MB of int64), whatever n_boot x n is


def bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot] means of ``values`` ([n]) resampled with replacement; memory is bounded by
    ``BOOT_CHUNK_ELEMENTS`` indices, and the draws equal one ``rng.integers(0, n, (n_boot, n))`` call."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = max(1, BOOT_CHUNK_ELEMENTS // max(v.size, 1))
    out = np.empty(n_boot)
    for lo in range(0, n_boot, rows):
        k = min(rows, n_boot - lo)
        out[lo : lo + k] = v[rng.integers(0, v.size, size=(k, v.size))].mean(axis=1)
    return out


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` ([n], e.g. per-pair correctness)."""
    v = check_finite(values, "bootstrap values")
    if v.size == 0:
        raise ValueError("bootstrap of zero values")
    means = bootstrap_means(v, n_boot, seed)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def paired_bootstrap_test(
    a: np.ndarray, b: np.ndarray, n_boot: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """Two-sided paired bootstrap test that mean(a) == mean(b), on the same pairs.

    ``a``, ``b``: [n] per-pair correctness of two models. Returns ``(mean(a) - mean(b), p_value)``;
    the smallest reportable p is 1 / (n_boot + 1).
    """
    a, b = check_finite(a, "paired test a"), check_finite(b, "paired test b")
    if a.shape != b.shape:
        raise ValueError(f"paired test needs equal shapes, got {a.shape} and {b.shape}")
    d = a - b
    boots = bootstrap_means(d, n_boot, seed)
    # shift the bootstrap distribution to the null (mean 0) and count resamples at least as extreme;
    # (count + 1) / (n_boot + 1) so that p is never reported as exactly 0
    extreme = int(np.sum(np.abs(boots - d.mean()) >= abs(d.mean()) - 1e-12))
    return float(d.mean()), (extreme + 1) / (n_boot + 1)


def mcnemar_test(a_correct: np.ndarray, b_correct: np.ndarray) -> float:
    """Exact McNemar test on discordant pairs (a right & b wrong vs a wrong & b right); returns p."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if n01 + n10 == 0:
        return 1.0
    return float(stats.binomtest(n01, n01 + n10, 0.5).pvalue)


def _probs(margins: np.ndarray, temperature: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(margins, dtype=np.float64) / temperature))


def reliability_curve(margins: np.ndarray, n_bins: int = 10, temperature: float = 1.0):
    """Reliability diagram of the Bradley-Terry probability p = sigmoid(margin / T), symmetric form.

    Each pair is seen from the predicted winner's side: confidence c = max(p, 1 - p) in [1/2, 1], and it
    is correct when the predicted winner is the chosen response (a tie counts 1/2). Returns
    ``(mean confidence, accuracy, count)`` per bin of c; a calibrated model has accuracy == confidence.
    """
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    p = _probs(check_finite(margins, "margins"), temperature)
    conf = np.maximum(p, 1 - p)
    correct = (p > 0.5) + 0.5 * (p == 0.5)
    idx = np.clip(np.digitize(conf, np.linspace(0.5, 1.0, n_bins + 1)[1:-1]), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    mean_conf = np.array([conf[idx == k].mean() if counts[k] else np.nan for k in range(n_bins)])
    accuracy = np.array([correct[idx == k].mean() if counts[k] else np.nan for k in range(n_bins)])
    return mean_conf, accuracy, counts


def expected_calibration_error(margins: np.ndarray, n_bins: int = 10, temperature: float = 1.0) -> float:
    """ECE = sum_k n_k / n * |accuracy_k - confidence_k| over the bins of :func:`reliability_curve`."""
    conf, acc, counts = reliability_curve(margins, n_bins, temperature)
    w = counts / counts.sum()
    return float(np.nansum(w * np.abs(acc - conf)))


def fit_temperature(margins: np.ndarray) -> float:
    """The temperature T minimising the BT negative log-likelihood -log sigmoid(margin / T) on held-out
    (ID validation) pairs. T > 1 softens over-confident rewards."""
    m = check_finite(margins, "margins")

    def nll(log_t: float) -> float:
        return float(np.mean(np.logaddexp(0.0, -m / np.exp(log_t))))

    res = optimize.minimize_scalar(nll, bounds=(-6, 6), method="bounded")
    return float(np.exp(res.x))


def spearman_agreement(rewards_a: Sequence[np.ndarray], rewards_b: Sequence[np.ndarray]) -> float:
    """Mean over prompts of the Spearman correlation between two RMs' rewards of the same candidates.

    ``rewards_a[i]``, ``rewards_b[i]``: [k_i] rewards of prompt i's candidates (k_i >= 2).
    """
    rhos = []
    for a, b in zip(rewards_a, rewards_b):
        rho = stats.spearmanr(a, b).statistic
        rhos.append(0.0 if np.isnan(rho) else rho)
    return float(np.mean(rhos))


def top1_agreement(rewards_a: Sequence[np.ndarray], rewards_b: Sequence[np.ndarray]) -> float:
    """Fraction of prompts where both RMs pick the same best candidate (Eisenstein et al.)."""
    return float(np.mean([np.argmax(a) == np.argmax(b) for a, b in zip(rewards_a, rewards_b)]))


def selective_accuracy(
    margins: np.ndarray,
    uncertainty: np.ndarray,
    coverages: Sequence[float] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5),
    ties: TiePolicy = "half",
) -> list[tuple[float, float]]:
    """Accuracy when abstaining on the most uncertain pairs (e.g. the highest ensemble std).

    Returns ``[(coverage, accuracy on the kept fraction)]``; a useful uncertainty makes accuracy rise as
    coverage falls.
    """
    c = correctness(margins, ties)
    order = np.argsort(np.asarray(uncertainty), kind="stable")  # most certain first
    out = []
    for cov in coverages:
        k = max(1, int(round(cov * len(c))))
        out.append((float(cov), float(c[order[:k]].mean())))
    return out


def length_bias(margins: np.ndarray, len_chosen: np.ndarray, len_rejected: np.ndarray) -> float | None:
    """Share of pairs whose two responses differ in length where the model prefers the longer one
    (reward of the longer > reward of the shorter; a tie counts 1/2). 0.5 is no length preference;
    ``None`` when every pair's responses have equal lengths."""
    m = check_finite(margins, "margins")
    d = np.asarray(len_chosen, dtype=np.float64) - np.asarray(len_rejected, dtype=np.float64)
    keep = d != 0
    if not keep.any():
        return None
    longer_wins = np.sign(m[keep]) * np.sign(d[keep])  # +1: the longer response got the higher reward
    return float(np.mean(np.where(longer_wins > 0, 1.0, np.where(longer_wins == 0, 0.5, 0.0))))
