"""Reward over-optimisation measurements: the sequence KL of a policy to its initial policy along sampled
paths, Gao et al.'s functional forms of gold reward against d = sqrt(KL), and win rates judged by gold.

Gao, Schulman, Hilton, "Scaling Laws for Reward Model Overoptimization" (2022): with d = sqrt(KL(pi ||
pi_init)) in nats, the gold reward gained over the initial policy follows

- RL:         R(d) = d (alpha - beta log d)
- best-of-N:  R(d) = d (alpha - beta d)

Both are linear in (alpha, beta), so least squares fits them exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def path_kl(logp: np.ndarray, logq: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Exact per-token KL over the vocabulary, summed along each sampled path.

    Args:
        logp: [N, T, V] log-probabilities of the current policy at each completion position.
        logq: [N, T, V] log-probabilities of the initial policy at the same positions.
        mask: [N, T] 1 where the position holds a sampled completion token (EOS included).

    Returns:
        [N] sum over the path of KL(p_t || q_t) in nats. Its expectation over paths sampled from p is
        KL(p || q) of the sequence distributions (the chain rule), with no sampling noise within a token.
    """
    p = np.exp(logp)
    per_token = (p * (logp - logq)).sum(axis=-1)  # [N, T]
    return (per_token * mask).sum(axis=-1)


class GaoFit(NamedTuple):
    """``alpha``, ``beta`` of R(d) and ``residual``: root mean squared error of the fit (reward units)."""

    alpha: float
    beta: float
    residual: float


def _design(d: np.ndarray, form: str) -> np.ndarray:
    if form == "rl":
        safe = np.where(d > 0, d, 1.0)
        return np.stack([d, -d * np.log(safe)], axis=1)  # d log d -> 0 as d -> 0
    if form == "bon":
        return np.stack([d, -(d**2)], axis=1)
    raise ValueError(f"unknown form {form!r}; use 'rl' or 'bon'")


def gao_curve(d: np.ndarray, alpha: float, beta: float, form: str = "rl") -> np.ndarray:
    """R(d) of Gao et al.'s form ``"rl"`` (d (alpha - beta log d)) or ``"bon"`` (d (alpha - beta d))."""
    return _design(np.asarray(d, dtype=np.float64), form) @ np.array([alpha, beta])


def fit_gao(d: np.ndarray, gain: np.ndarray, form: str = "rl") -> GaoFit:
    """Least-squares fit of Gao et al.'s form to ``gain`` [n] (gold reward minus the initial policy's)
    at ``d`` [n] = sqrt(KL) in sqrt-nats. Fewer than 2 points with d > 0 give NaNs."""
    d = np.asarray(d, dtype=np.float64)
    gain = np.asarray(gain, dtype=np.float64)
    if d.shape != gain.shape or d.ndim != 1:
        raise ValueError(f"d and gain must be 1-D of the same length, got {d.shape} and {gain.shape}")
    if np.count_nonzero(d > 0) < 2:
        return GaoFit(float("nan"), float("nan"), float("nan"))
    x = _design(d, form)
    coef, *_ = np.linalg.lstsq(x, gain, rcond=None)
    resid = float(np.sqrt(np.mean((x @ coef - gain) ** 2)))
    return GaoFit(float(coef[0]), float(coef[1]), resid)


def peak_and_drop(mean: np.ndarray, ci: np.ndarray) -> tuple[int, float, bool]:
    """Index of the highest ``mean`` [n], the drop from it to the last point, and whether the drop is
    larger than the half-width of the last point's CI (``ci`` [n, 2]): ``(peak, drop, over_optimised)``."""
    mean = np.asarray(mean, dtype=np.float64)
    ci = np.asarray(ci, dtype=np.float64)
    peak = int(np.argmax(mean))
    drop = float(mean[peak] - mean[-1])
    half = float(ci[-1, 1] - ci[-1, 0]) / 2
    return peak, drop, bool(drop > half)


def win_rate_per_prompt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Chance that a sample of policy A beats one of policy B by gold (ties 1/2), per prompt.

    Args:
        a: [P, S] gold rewards of A's samples; b: [P, S'] of B's on the same prompts.

    Returns:
        [P] mean over all S x S' sample pairs of 1[a > b] + 1/2 1[a == b].
    """
    a = np.asarray(a, dtype=np.float64)[:, :, None]
    b = np.asarray(b, dtype=np.float64)[:, None, :]
    return ((a > b) + 0.5 * (a == b)).mean(axis=(1, 2))


def best_within(kl: np.ndarray, gold: np.ndarray, budget: float) -> float:
    """The reward-vs-drift frontier at ``budget``: the highest ``gold`` [n] among points whose ``kl`` [n]
    is at most ``budget`` (NaN if none is)."""
    kl, gold = np.asarray(kl, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    inside = kl <= budget
    return float(gold[inside].max()) if inside.any() else float("nan")
