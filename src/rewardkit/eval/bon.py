"""Best-of-N maths over candidates' rewards: selection, the exact overoptimisation curve, and preference
labelling for iterative DPO (sampling the candidates is :mod:`rewardkit.eval.generation`)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardkit.base import RewardModel
from rewardkit.data import PreferenceDataset
from rewardkit.records import PreferencePair, Prompt


def bon_kl_bound(n: int) -> float:
    """The bound log n - (n - 1) / n (nats) on KL(best-of-n || base policy).

    It is the KL for a base policy with no repeated responses (Stiennon et al.); with repeats the true
    KL is smaller (Beirami et al.), which is why WARM and Gao et al. plot against it as a bound.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.log(n) - (n - 1) / n


#: The same function under its older name (it is a bound, not the KL itself).
bon_kl = bon_kl_bound


def bon_rank_weights(k: int, n: int) -> np.ndarray:
    """[k] probability that the best of a uniformly random ``n``-subset of ``k`` distinct scores
    (drawn without replacement) is the one of ascending rank j (0-based): C(j, n - 1) / C(k, n).

    Exact big-integer arithmetic, each weight rounded once; the weights sum to 1."""
    if not 1 <= n <= k:
        raise ValueError(f"need 1 <= n <= k, got n={n}, k={k}")
    total = math.comb(k, n)
    return np.array([math.comb(j, n - 1) / total for j in range(k)], dtype=np.float64)


def _tie_means(sorted_scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` [k] (in the order of ascending ``sorted_scores`` [k]) replaced by their mean over each
    group of equal scores: the best-of-n pick among tied candidates is uniform over the tied group."""
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    sums = np.add.reduceat(values, starts)
    sizes = np.diff(np.r_[starts, len(values)])
    return np.repeat(sums / sizes, sizes)


def bon_expectations(
    proxy: np.ndarray, values: np.ndarray, ns: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact expected ``values`` (e.g. gold rewards) and expected proxy reward of the proxy's best-of-n
    pick, per prompt, for each n: the n-subset is uniform without replacement over the k candidates,
    proxy ties are split uniformly.

    Args:
        proxy: [P, k] proxy rewards of every candidate of P prompts.
        values: [P, k] the quantity to average over the pick (gold reward, a win indicator, ...).
        ns: subset sizes, each in 1..k.

    Returns:
        ``(values_at_n, proxy_at_n)``, each [P, len(ns)].
    """
    proxy, values = np.asarray(proxy, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if proxy.ndim != 2 or proxy.shape != values.shape:
        raise ValueError(
            f"proxy and values must be equal [P, k] arrays, got {proxy.shape} and {values.shape}"
        )
    if not (np.isfinite(proxy).all() and np.isfinite(values).all()):
        raise ValueError("proxy and values must be finite")
    weights = np.stack([bon_rank_weights(proxy.shape[1], n) for n in ns])  # [len(ns), k]
    order = np.argsort(proxy, axis=1, kind="stable")
    sp = np.take_along_axis(proxy, order, axis=1)
    sv = np.take_along_axis(values, order, axis=1)
    grouped = np.stack([_tie_means(a, b) for a, b in zip(sp, sv)])
    return grouped @ weights.T, sp @ weights.T


def win_indicator(gold: np.ndarray) -> np.ndarray:
    """[P, k] probability that each candidate's gold beats a uniformly random candidate of its prompt
    (ties count 1/2): its expected value under the best-of-n pick is the win rate against n = 1."""
    g = np.asarray(gold, dtype=np.float64)
    s = np.sort(g, axis=1)
    below = np.stack([np.searchsorted(r, x, "left") for r, x in zip(s, g)])
    upto = np.stack([np.searchsorted(r, x, "right") for r, x in zip(s, g)])
    return (below + 0.5 * (upto - below)) / g.shape[1]


def top1_agreement_at_n(a: np.ndarray, b: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """[P, len(ns)] probability that proxies ``a`` and ``b`` ([P, k] each) pick the same candidate from
    the same uniform n-subset. Ties are broken by candidate index (the later one wins).

    Candidate c is both picks iff the subset holds c and otherwise only candidates below c under both
    proxies: sum over c of C(m_c, n - 1) / C(k, n), m_c = #{x : a_x < a_c and b_x < b_c}."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must be equal [P, k] arrays, got {a.shape} and {b.shape}")
    p, k = a.shape
    ra = np.argsort(np.argsort(a, axis=1, kind="stable"), axis=1)  # ranks, ties by index
    rb = np.argsort(np.argsort(b, axis=1, kind="stable"), axis=1)
    m = np.stack(  # [P, k], one prompt at a time ([k, k] each)
        [((x[None, :] < x[:, None]) & (y[None, :] < y[:, None])).sum(axis=1) for x, y in zip(ra, rb)]
    )
    out = np.empty((p, len(ns)))
    for i, n in enumerate(ns):
        if not 1 <= n <= k:
            raise ValueError(f"need 1 <= n <= k, got n={n}, k={k}")
        total = math.comb(k, n)
        table = np.array([math.comb(j, n - 1) / total for j in range(k)])
        out[:, i] = table[m].sum(axis=1)
    return out


def default_ns(k: int) -> list[int]:
    """1, 2, 4, ... up to k, and k itself when it is not a power of two."""
    ns = [2**i for i in range(int(math.log2(k)) + 1)]
    return ns if ns[-1] == k else [*ns, k]


def score_candidates(
    rm: RewardModel, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
) -> list[np.ndarray]:
    """Rewards of every candidate, one array per prompt (all scored in one engine call)."""
    if len(prompts) != len(candidates):
        raise ValueError(f"got {len(prompts)} prompts but {len(candidates)} candidate lists")
    flat_p = [p for p, cs in zip(prompts, candidates) for _ in cs]
    flat_r = [c for cs in candidates for c in cs]
    scores = rm.score(flat_p, flat_r)
    out, i = [], 0
    for cs in candidates:
        out.append(scores[i : i + len(cs)])
        i += len(cs)
    return out


def best_of_n(
    rm: RewardModel, prompts: Sequence[Prompt], candidates: Sequence[Sequence[str]]
) -> tuple[list[int], list[float]]:
    """Index and reward of the highest-reward candidate for each prompt (first one on ties)."""
    rewards = score_candidates(rm, prompts, candidates)
    idx = [int(np.argmax(r)) for r in rewards]
    return idx, [float(r[i]) for r, i in zip(rewards, idx)]


def bon_curve(
    proxy: RewardModel,
    gold: RewardModel | Sequence[np.ndarray],
    prompts: Sequence[Prompt],
    candidates: Sequence[Sequence[str]],
    ns: Sequence[int] | None = None,
    n_resamples: int = 50,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Gold reward of the proxy's best-of-N pick vs N, and the KL bound, averaged over prompts.

    Exact (``bon_expectations``): every N-subset of each prompt's K candidates counts, so
    ``n_resamples`` and ``seed`` are accepted for older callers and not used. Prompts may have different
    K; N goes up to the smallest. ``gold`` is a reward model or precomputed gold rewards (one array per
    prompt). Returns ``{"n", "kl", "gold", "proxy"}`` lists (``kl`` is ``bon_kl_bound``): where gold
    falls while proxy keeps rising, the proxy is being over-optimised.
    """
    k = min(len(c) for c in candidates)
    ns = list(ns) if ns is not None else [2**i for i in range(int(math.log2(k)) + 1)]
    if max(ns) > k:
        raise ValueError(f"N={max(ns)} exceeds the {k} candidates available per prompt")
    proxy_r = score_candidates(proxy, prompts, candidates)
    gold_r = (
        score_candidates(gold, prompts, candidates)
        if isinstance(gold, RewardModel)
        else [np.asarray(g) for g in gold]
    )
    g_rows, p_rows = [], []
    for pr, gr in zip(proxy_r, gold_r):  # one prompt at a time: K may differ between prompts
        g, p = bon_expectations(np.asarray(pr)[None], np.asarray(gr)[None], ns)
        g_rows.append(g[0])
        p_rows.append(p[0])
    return {
        "n": list(ns),
        "kl": [bon_kl_bound(n) for n in ns],
        "gold": np.mean(g_rows, axis=0).tolist(),
        "proxy": np.mean(p_rows, axis=0).tolist(),
    }


STRATEGIES = ("max_min", "max_random", "random_pair")


def label_preferences(
    rm: RewardModel,
    prompts: Sequence[Prompt],
    candidates: Sequence[Sequence[str]],
    strategy: str = "max_min",
    seed: int = 0,
) -> PreferenceDataset:
    """Build preference pairs from K candidates per prompt with a reward model (Lin et al., Alg. 1).

    - ``max_min``: chosen = highest reward, rejected = lowest;
    - ``max_random``: chosen = highest, rejected = a random other candidate;
    - ``random_pair``: two random candidates, ordered by reward.

    Prompts whose two picked rewards tie are skipped and listed in ``dataset.skipped``. Metadata holds
    both rewards and candidate indices.
    """
    from rewardkit.data import SkippedRecord

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    rng = random.Random(seed)
    pairs, skipped = [], []
    for i, (p, cs, r) in enumerate(zip(prompts, candidates, score_candidates(rm, prompts, candidates))):
        if len(cs) < 2:
            skipped.append(SkippedRecord(f"prompt {i}", "fewer than 2 candidates"))
            continue
        order = np.argsort(-r, kind="stable")
        if strategy == "max_min":
            a, b = int(order[0]), int(order[-1])
        elif strategy == "max_random":
            a = int(order[0])
            b = rng.choice([j for j in range(len(cs)) if j != a])
        else:
            a, b = rng.sample(range(len(cs)), 2)
            a, b = (a, b) if r[a] >= r[b] else (b, a)
        if r[a] == r[b]:
            skipped.append(SkippedRecord(f"prompt {i}", "chosen and rejected rewards tie"))
            continue
        meta: dict[str, Any] = {
            "chosen_reward": float(r[a]),
            "rejected_reward": float(r[b]),
            "chosen_index": a,
            "rejected_index": b,
            "strategy": strategy,
        }
        pairs.append(PreferencePair(p, cs[a], cs[b], meta))
    return PreferenceDataset(pairs, skipped, source=f"label_preferences({strategy})")
