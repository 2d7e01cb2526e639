"""Several groups' reward models, one policy, truthful payments (Sun et al., "Mechanism Design for LLM
Fine-tuning with Multiple Reward Models").

Groups i = 1..G, of sizes (weights) w_i, report reward models r_i; the provider trains one policy that
maximises the weighted social welfare with a KL penalty to the initial policy (the SW-Max training rule):

    ASW(pi) = sum_i w_i v_i(pi) - kl_coef * KL(pi || pi_init),        v_i(pi) = E_{y ~ pi}[r_i(y)]

On a finite candidate set (N responses per prompt sampled from pi_init, as in best-of-N) its optimum is
closed-form: pi*(y) proportional to pi_init(y) exp(sum_i w_i r_i(y) / kl_coef). Without payments a group
gains by misreporting (e.g. a polarised report that puts all its reward on its favourite response). The
affine maximizer payment (weighted VCG)

    p_i = ASW_{-i}(pi*_{-i}) - ASW_{-i}(pi*),   ASW_{-i}(pi) = sum_{j != i} w_j v_j(pi) - kl_coef KL(pi || pi_init)

where pi*_{-i} is the optimum without group i, makes truthful reporting a dominant strategy (DSIC) for
group utilities u_i = w_i v_i(pi*) - p_i, and keeps them non-negative (IR) when rewards are
non-negative. The paper assumes rewards in [0, 1] summing to 1 over the responses:
:func:`normalize_rewards` maps any rewards there (per group and prompt: subtract the minimum, divide by
the sum; a constant row becomes uniform).

Everything below is pure numpy over arrays, except :func:`aggregate`, which scores the candidates of
every prompt with each reward model through the engine once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def normalize_rewards(rewards: np.ndarray) -> np.ndarray:
    """Map each row of ``rewards`` ([..., N] over N candidates) to non-negative values summing to 1:
    ``(r - min r) / sum(r - min r)``; a constant row becomes uniform (1/N). Order-preserving per row."""
    r = np.asarray(rewards, dtype=np.float64)
    shifted = r - r.min(axis=-1, keepdims=True)
    total = shifted.sum(axis=-1, keepdims=True)
    uniform = np.full_like(shifted, 1.0 / r.shape[-1])
    return np.where(total > 0, shifted / np.where(total > 0, total, 1.0), uniform)


def _check(rewards: np.ndarray, weights: np.ndarray, kl_coef: float, base: np.ndarray | None) -> np.ndarray:
    if rewards.ndim != 2 or rewards.shape[1] < 1:
        raise ValueError(f"rewards must be [groups, candidates], got shape {rewards.shape}")
    if not np.isfinite(rewards).all():
        raise ValueError("rewards hold NaN or infinite values")
    if weights.shape != (rewards.shape[0],) or not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(
            f"weights must be {rewards.shape[0]} finite non-negative numbers, got {weights.tolist()}"
        )
    if not (np.isfinite(kl_coef) and kl_coef > 0):
        raise ValueError(f"kl_coef must be a positive finite number, got {kl_coef}")
    n = rewards.shape[1]
    if base is None:
        return np.full(n, 1.0 / n)
    base = np.asarray(base, dtype=np.float64)
    if base.shape != (n,) or (base <= 0).any() or not np.isclose(base.sum(), 1.0):
        raise ValueError("base must be N positive probabilities summing to 1 (pi_init over the candidates)")
    return base


def sw_max_policy(rewards: np.ndarray, weights: np.ndarray, kl_coef: float, base: np.ndarray) -> np.ndarray:
    """The SW-Max training rule over candidates: pi(y) proportional to base(y) exp(sum_i w_i r_i(y) / kl_coef).

    ``rewards``: [G, N]; ``weights``: [G]; ``base``: [N] probabilities. Returns [N] probabilities."""
    logits = np.log(base) + (weights @ rewards) / kl_coef
    logits -= logits.max()
    p = np.exp(logits)
    return p / p.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats for probability vectors (0 log 0 = 0)."""
    mask = p > 0
    return float(np.sum(p[mask] * (np.log(p[mask]) - np.log(q[mask]))))


def asw(
    policy: np.ndarray, rewards: np.ndarray, weights: np.ndarray, kl_coef: float, base: np.ndarray
) -> float:
    """Affine social welfare sum_i w_i E_policy[r_i] - kl_coef KL(policy || base)."""
    return float(weights @ (rewards @ policy)) - kl_coef * kl(policy, base)


@dataclass(frozen=True)
class MechanismResult:
    """The mechanism's outcome on one candidate set (G groups, N candidates).

    ``policy`` [N]: pi*; ``valuations`` [G]: v_i = E_pi*[r_i] (per group member); ``payments`` [G]: p_i;
    ``utilities`` [G]: w_i v_i - p_i (as the reported rewards value them); ``welfare``: ASW(pi*);
    ``kl``: KL(pi* || pi_init) in nats."""

    policy: np.ndarray
    valuations: np.ndarray
    payments: np.ndarray
    utilities: np.ndarray
    welfare: float
    kl: float


def affine_maximizer(
    rewards: np.ndarray, weights: Sequence[float], kl_coef: float, base: np.ndarray | None = None
) -> MechanismResult:
    """The SW-Max policy and the affine maximizer payments for reported ``rewards`` [G, N] of groups of
    sizes ``weights`` [G], KL coefficient ``kl_coef`` and initial policy ``base`` [N] (uniform by default).

    Rewards are used as given: apply :func:`normalize_rewards` first for the paper's setting (required
    for the IR guarantee, which needs non-negative rewards)."""
    r = np.asarray(rewards, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    base = _check(r, w, kl_coef, base)
    pi = sw_max_policy(r, w, kl_coef, base)
    v = r @ pi
    payments = np.empty(len(w))
    for i in range(len(w)):
        others = np.arange(len(w)) != i
        pi_without = sw_max_policy(r[others], w[others], kl_coef, base)
        payments[i] = asw(pi_without, r[others], w[others], kl_coef, base) - asw(
            pi, r[others], w[others], kl_coef, base
        )
    return MechanismResult(pi, v, payments, w * v - payments, asw(pi, r, w, kl_coef, base), kl(pi, base))


def utility(
    true_reward: np.ndarray,
    i: int,
    reports: np.ndarray,
    weights: Sequence[float],
    kl_coef: float,
    base: np.ndarray | None = None,
    payments: bool = True,
) -> float:
    """Group ``i``'s utility w_i E_pi[true r_i] - p_i when the groups report ``reports`` [G, N] (its own
    report may differ from ``true_reward``); ``payments=False``: the training rule alone."""
    res = affine_maximizer(reports, weights, kl_coef, base)
    value = float(np.asarray(weights, dtype=np.float64)[i] * (np.asarray(true_reward) @ res.policy))
    return value - (res.payments[i] if payments else 0.0)


@dataclass(frozen=True)
class Aggregate:
    """:func:`aggregate` over P prompts: per prompt the mechanism's result and the index of the
    candidate pi* weights most (``best``); ``valuations``, ``payments``, ``utilities`` [G] are means over
    prompts (the objective is an expectation over prompts)."""

    results: list[MechanismResult]
    best: list[int]
    valuations: np.ndarray
    payments: np.ndarray
    utilities: np.ndarray


def aggregate(
    rms: Sequence[Any],
    weights: Sequence[float],
    prompts: Sequence[Any],
    candidates: Sequence[Sequence[str]],
    kl_coef: float,
    *,
    normalize: bool = True,
    base: Sequence[np.ndarray] | None = None,
) -> Aggregate:
    """Score every prompt's candidates with each group's reward model (one engine call per model), then
    run :func:`affine_maximizer` per prompt. ``normalize``: :func:`normalize_rewards` per group and
    prompt (the paper's setting). ``base``: pi_init's probabilities of each prompt's candidates
    (uniform by default, as for samples drawn from pi_init)."""
    from rewardkit.eval.bon import score_candidates

    if len(rms) != len(weights):
        raise ValueError(f"got {len(rms)} reward models but {len(weights)} weights")
    per_model = [score_candidates(rm, prompts, candidates) for rm in rms]  # [G][P] -> [N_p]
    results, best = [], []
    for p in range(len(prompts)):
        r = np.stack([per_model[g][p] for g in range(len(rms))]).astype(np.float64)
        if normalize:
            r = normalize_rewards(r)
        res = affine_maximizer(r, weights, kl_coef, None if base is None else base[p])
        results.append(res)
        best.append(int(np.argmax(res.policy)))
    mean = lambda attr: np.mean([getattr(x, attr) for x in results], axis=0)  # noqa: E731
    return Aggregate(results, best, mean("valuations"), mean("payments"), mean("utilities"))
