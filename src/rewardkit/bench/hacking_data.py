"""``rewardkit bench hacking`` inputs: the built-in spurious synthetic task, or real data (prompts and
pairs from a recipe / file, candidates sampled by ``--policy`` (cached) or read from ``--candidates``,
labels and candidate rewards from a ``--gold`` reward model)."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.bench.hacking_config import HackingConfig
from rewardkit.data import PreferenceDataset
from rewardkit.distributed import score_sharded, shard
from rewardkit.errors import DataError, RewardkitError
from rewardkit.records import PreferencePair


@dataclass
class Task:
    """Training / held-out pairs (labelled by gold), the best-of-N prompts, their K candidates each and
    the candidates' gold rewards [P, K]."""

    train: PreferenceDataset
    val: PreferenceDataset
    prompts: list[Any]
    candidates: list[list[str]]
    gold: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)
    #: applied to each setup's training pairs after label corruption (the labellers' style)
    style: Callable[[PreferenceDataset], PreferenceDataset] | None = None


def gather_scores(rm, prompts: list[Any], responses: list[str], rank: int = 0, size: int = 1) -> np.ndarray:
    """[n] rewards of ``(prompts[i], responses[i])``; under torchrun each rank scores a strided shard
    and every rank receives all of them in input order."""

    def score(idx: list[int]) -> np.ndarray:
        return rm.score([prompts[i] for i in idx], [responses[i] for i in idx])

    return score_sharded(score, len(prompts), rank, size)


def builtin_task(config: HackingConfig) -> Task:
    """The synthetic task with a spurious feature: pairs labelled by gold, to which (after any label
    corruption) the labellers' style is added (``rewardkit.synthetic.add_spurious``), and base-policy
    candidates that vary in it (``make_hacking_candidates``)."""
    from functools import partial

    from rewardkit.synthetic import (
        add_spurious,
        gold_reward,
        make_hacking_candidates,
        make_synthetic_preferences,
    )

    t = config.task
    pool = make_synthetic_preferences(config.n_train + config.n_val, config.seed)
    style = partial(add_spurious, seed=config.seed, p_chosen=t.p_chosen, p_rejected=t.p_rejected)
    prompts, cands = make_hacking_candidates(
        config.n_prompts, config.k, config.seed, t.p_candidate, t.max_count
    )
    gold = np.array([[gold_reward(c) for c in row] for row in cands], dtype=np.float64)
    summary = {
        "source": pool.source,
        "gold": "synthetic gold_reward (#good - #bad words)",
        "spurious": "labellers' chosen responses (after corruption) tend to contain the word 'indeed'",
    }
    n = config.n_train
    val = style(PreferenceDataset(pool[n:], source=pool.source))
    return Task(PreferenceDataset(pool[:n], source=pool.source), val, prompts, cands, gold, summary, style)


def check_inputs(config: HackingConfig) -> None:
    """Refuse missing input paths, and backbone / policy folders that are not model folders, before
    anything runs (one line naming the flag and the path)."""
    paths = [("--gold", config.gold), ("--policy", config.policy), ("--candidates", config.candidates)]
    paths += [("--pretrain-models", m) for m in config.pretrain_models]
    for flag, path in paths:
        if path is not None and not Path(path).exists():
            raise RewardkitError(f"{flag} {path}: no such file or folder")
    if config.candidates is not None and not Path(config.candidates).is_file():
        raise RewardkitError(f"--candidates {config.candidates}: not a file")
    from rewardkit.checkpoints import check_model_folder

    for flag, path in [("--model", config.model), ("--policy", config.policy), *paths[3:]]:
        if path is not None:  # a causal LM folder (weights, config.json) before anything is written
            check_model_folder(path, f"{flag} model")


def _key(prompt: Any) -> str:
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def read_candidates(path: str | Path, k: int) -> tuple[list[Any], list[list[str]]]:
    """Prompts and their first ``k`` candidates from a JSONL file of ``{"prompt": str | messages,
    "candidates": [str, ...]}`` lines (read under the preference files' bounds); every line needs at
    least ``k`` candidates, and a line that is not that is one error naming it."""
    from rewardkit.readers import iter_jsonl
    from rewardkit.records import _check_messages, _check_unicode

    prompts, cands = [], []
    for where, rec in iter_jsonl(path):
        if isinstance(rec, DataError):  # bad bytes, bad JSON, JSON nested too deeply, a line too long
            raise rec
        if not isinstance(rec, dict) or "prompt" not in rec or "candidates" not in rec:
            raise DataError(f"{where}: needs fields 'prompt' and 'candidates'")
        _check_unicode(rec, where)
        c = rec["candidates"]
        if not isinstance(c, list) or not all(isinstance(x, str) for x in c):
            raise DataError(f"{where}: field 'candidates' must be a list of strings")
        if len(c) < k:
            raise DataError(f"{where}: field 'candidates' has {len(c)} responses; --k is {k}")
        prompt = rec["prompt"]
        if not isinstance(prompt, str):  # a conversation: a non-empty list of {role, content} strings
            prompt = _check_messages(prompt, where, "prompt")
        prompts.append(prompt)
        cands.append(c[:k])
    if len(prompts) < 2:
        raise DataError(f"{path}: needs at least 2 prompts, found {len(prompts)}")
    return prompts, cands


def _policy_fingerprint(policy: str) -> list:
    """Names, sizes and modification times of the policy's files (a changed checkpoint resamples)."""
    folder = Path(policy)
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())


def sample_candidates(
    config: HackingConfig, prompts: list[Any], rank: int, size: int, log
) -> list[list[str]]:
    """K samples per prompt from ``config.policy``, cached on disk under the rewardkit cache folder
    (keyed by the policy's files, the prompts and the sampling settings); sharded across ranks."""
    from rewardkit.demo import cache_dir
    from rewardkit.eval.generation import generate_candidates
    from rewardkit.io import atomic_write_text, dumps

    settings = {
        "policy": str(Path(config.policy).resolve()),
        "files": _policy_fingerprint(config.policy),
        "prompts": prompts,
        "k": config.k,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "seed": config.seed,
    }
    key = hashlib.sha256(dumps(settings, sort_keys=True).encode()).hexdigest()[:32]
    cache = cache_dir() / "hacking-candidates" / f"{key}.jsonl"
    if cache.is_file():
        log(f"candidates: cached sample in {cache}")
        return read_candidates(cache, config.k)[1]
    idx = shard(len(prompts), rank, size)
    mine = generate_candidates(
        config.policy,
        [prompts[i] for i in idx],
        config.k,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=config.seed + rank,
    )
    rows: dict[int, list[str]] = dict(zip(idx, mine))
    if size > 1:
        import torch.distributed as dist

        parts: list = [None] * size
        dist.all_gather_object(parts, rows)
        rows = {i: r for part in parts for i, r in part.items()}
    cands = [rows[i] for i in range(len(prompts))]
    if rank == 0:
        cache.parent.mkdir(parents=True, exist_ok=True)
        lines = [dumps({"prompt": p, "candidates": c}) for p, c in zip(prompts, cands)]
        atomic_write_text(cache, "\n".join(lines) + "\n")
    return cands


def _too_few(n: int, config: HackingConfig) -> bool:
    """Whether ``n`` labelled pairs are too few for a held-out quarter (at least 2, at most ``n_val``)
    and at least 4 training pairs."""
    n_val = min(config.n_val, n // 4)
    return n - n_val < 4 or n_val < 2


@dataclass
class RealInputs:
    """What a real-data run reads before it writes anything (:func:`read_real_inputs`): the pool of pairs,
    the best-of-N prompts with their candidates (None: ``--policy`` samples them later), the pairs outside
    those prompts that gold labels, and the gold reward model."""

    pool: PreferenceDataset
    prompts: list[Any]
    candidates: list[list[str]] | None
    rest: list[PreferencePair]
    gold_rm: Any


def read_real_inputs(config: HackingConfig, device) -> RealInputs:
    """Every input of a real-data run, read and checked before its output is touched: the recipe / data
    file, the ``--candidates`` file (a bad one is one line naming it, with nothing written), the best-of-N
    prompts, the training pool outside them, and the gold reward model loaded on ``device``."""
    from rewardkit.data import load_preferences
    from rewardkit.models.registry import load_reward_model

    if config.recipe is not None:
        from rewardkit.bench.recipes import load_recipe

        pool = load_recipe(config.recipe, config.data, on_error="skip")
    else:
        pool = load_preferences(config.data, on_error="skip")
    if config.candidates is not None:
        prompts, cands = read_candidates(config.candidates, config.k)
        prompts, cands = prompts[: config.n_prompts], cands[: config.n_prompts]
    else:
        distinct = list(dict.fromkeys(_key(p.prompt) for p in pool))
        random.Random(config.seed).shuffle(distinct)
        prompts = [json.loads(s) for s in distinct[: config.n_prompts]]
        cands = None
    held = {_key(p) for p in prompts}
    rest = [p for p in pool if _key(p.prompt) not in held]
    random.Random(config.seed + 1).shuffle(rest)
    rest = rest[: config.n_train + config.n_val]
    if _too_few(len(rest), config):  # even if gold labels every one of them
        raise RewardkitError(
            f"too few training pairs outside the best-of-N prompts ({len(rest)} in the data)"
        )
    return RealInputs(pool, prompts, cands, rest, load_reward_model(config.gold, device=device))


def real_task(config: HackingConfig, inputs: RealInputs, rank: int, size: int, log) -> Task:
    """Pairs from the recipe / data file relabelled by the gold RM (ties counted and left out), the
    best-of-N prompts (the candidates file's, else held-out prompts of the data) and their candidates."""
    pool, prompts, cands, rest, gold_rm = (
        inputs.pool,
        inputs.prompts,
        inputs.candidates,
        inputs.rest,
        inputs.gold_rm,
    )
    g = gather_scores(
        gold_rm,
        [p.prompt for p in rest] * 2,
        [p.chosen for p in rest] + [p.rejected for p in rest],
        rank,
        size,
    )
    labelled, ties = [], 0
    for p, gc, gr in zip(rest, g[: len(rest)], g[len(rest) :]):
        if gc == gr:
            ties += 1
            continue
        c, r = (p.chosen, p.rejected) if gc > gr else (p.rejected, p.chosen)
        labelled.append(PreferencePair(p.prompt, c, r, {**p.metadata, "gold_chosen": max(gc, gr)}))
    n_val = min(config.n_val, len(labelled) // 4)
    if _too_few(len(labelled), config):
        raise RewardkitError(
            f"too few training pairs outside the best-of-N prompts ({len(labelled)} labelled)"
        )
    if cands is None:
        cands = sample_candidates(config, prompts, rank, size, log)
    k = config.k
    flat = gather_scores(
        gold_rm, [p for p in prompts for _ in range(k)], [c for row in cands for c in row], rank, size
    )
    del gold_rm
    inputs.gold_rm = None  # not needed past here: its memory goes
    summary = {
        "source": pool.source,
        "skipped_records": len(pool.skipped),
        "gold": str(config.gold),
        "gold_ties_left_out": ties,
        "candidates": config.candidates or f"sampled from {config.policy}",
    }
    train = PreferenceDataset(labelled[n_val:][: config.n_train], source=f"{pool.source} (labelled by gold)")
    val = PreferenceDataset(labelled[:n_val], source=train.source)
    return Task(train, val, prompts, cands, flat.reshape(len(prompts), k), summary)
