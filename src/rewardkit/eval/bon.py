"""Best-of-N selection, the overoptimisation curve, and preference labelling for iterative DPO."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardkit.base import RewardModel
from rewardkit.data import PreferenceDataset, PreferencePair, Prompt


def bon_kl(n: int) -> float:
    """Analytic KL(best-of-n || base policy) = log n - (n - 1) / n (nats)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.log(n) - (n - 1) / n


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
    """Gold reward of the proxy's best-of-N pick vs N (and the analytic KL), averaged over prompts and
    ``n_resamples`` random N-subsets of each prompt's K candidates.

    ``gold`` is a reward model or precomputed gold rewards (one array per prompt). Returns
    ``{"n", "kl", "gold", "proxy"}`` lists: where gold falls while proxy keeps rising, the proxy is
    being over-optimised.
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
    rng = random.Random(seed)
    out: dict[str, list[float]] = {"n": [], "kl": [], "gold": [], "proxy": []}
    for n in ns:
        g_sum = p_sum = 0.0
        count = 0
        for pr, gr in zip(proxy_r, gold_r):
            for _ in range(n_resamples if n < len(pr) else 1):
                sub = rng.sample(range(len(pr)), n)
                best = max(sub, key=lambda j: pr[j])
                g_sum, p_sum, count = g_sum + gr[best], p_sum + pr[best], count + 1
        out["n"].append(n)
        out["kl"].append(bon_kl(n))
        out["gold"].append(float(g_sum / count))
        out["proxy"].append(float(p_sum / count))
    return out


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


def generate_candidates(
    model_path: str,
    prompts: Sequence[Prompt],
    n: int,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    device=None,
) -> list[list[str]]:
    """Sample ``n`` responses per prompt from any HF causal LM (chat template when it has one)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rewardkit.models.common import load_tokenizer, resolve_device
    from rewardkit.templating import to_messages

    dev = resolve_device(device)
    tok = load_tokenizer(model_path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_path).to(dev).eval()
    texts = [
        tok.apply_chat_template(to_messages(p), tokenize=False, add_generation_prompt=True)
        if tok.chat_template
        else (p if isinstance(p, str) else "\n".join(m["content"] for m in p))
        for p in prompts
    ]
    torch.manual_seed(seed)
    out: list[list[str]] = []
    for lo in range(0, len(texts), batch_size):
        enc = tok(
            texts[lo : lo + batch_size],
            return_tensors="pt",
            padding=True,
            add_special_tokens=not tok.chat_template,
        )
        with torch.inference_mode():
            gen = model.generate(
                **enc.to(dev),
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=tok.pad_token_id,
            )
        decoded = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out.extend(decoded[j : j + n] for j in range(0, len(decoded), n))
    return out
