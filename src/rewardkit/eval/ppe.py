"""PPE, Preference Proxy Evaluations (Frick et al., ICLR 2025, arXiv:2410.14872): its human-preference
set and its correctness (best-of-K) sets.

**Source.** The official code (lmarena/PPE) has no snapshot reachable from here (tried again
2026-12-07: ``fetch`` has none; the code index holds only the first lines of its ``utils/scorers.py``,
which read a result file with ``"$ERROR$"`` rewards replaced by -inf, and its ``mmlu_pro_best_of_k``
benchmark: ``lmarena-ai/PPE-MMLU-Pro-Best-of-K``, 32 responses per question, scored by its
``ConflictScorer``, ``AUCScorer`` and ``BestOfKScorer``), so these rules follow the paper and the
dataset layouts (the hub dataset cards' feature lists), not a line-by-line reading of the code; each
choice below that the paper leaves open is marked *(rewardkit)* and is the first thing to check against
lmarena/PPE.

**ppe-preference** (``lmarena-ai/PPE-Human-Preference-V1``, split ``test``): a row holds
``question_id``, ``prompt``, ``response_1``, ``response_2``, ``winner`` (``model_a`` / ``model_b``;
any other value is a human tie), ``language`` and PPE's boolean tag columns. A pair is right when the
response the human preferred gets the strictly higher reward (a reward tie is wrong *(rewardkit)*); human ties do not count (their
per-example credit is NaN, and the report's counts say how many rows each category holds). Accuracy
is reported overall and per category (:data:`PREFERENCE_CATEGORIES`): a boolean column that is true on
the row (the hub's ``hard_prompt``, ``easy_prompt``, ``if_prompt``, ``math_prompt``, ``is_code``; a local
file may give the others as booleans too), and on a hub row, which has no language booleans, the
language categories from its ``language`` string (:func:`language_tags`, *(rewardkit)*). The hub has no
column for ``shorter_won`` or ``similar_response`` (it has ``longer_won`` and ``sim``, whose thresholds
the official code sets), so on hub data they are listed as missing groups. ``lower_bound`` is the lowest
category accuracy *(rewardkit: the minimum)*.

**ppe-correctness** (``lmarena-ai/PPE-{MMLU-Pro, MATH, GPQA, IFEval, MBPP-Plus}-Best-of-K``, split
``train``): a row holds ``question_id``, ``prompt`` and K sampled responses with 0/1 correctness: the responses as numbered
columns ``response_1 .. response_K`` (the hub layout) or a list ``responses``, the correctness as a list
``scores`` (the hub layout) or numbered ``score_1 .. score_K``; every row of a file has the same K. Per benchmark:

- ``accuracy``: over each prompt's (correct, incorrect) response pairs, the share where the correct one
  gets the strictly higher reward, averaged over the prompts that have such a pair;
- ``best_of_k``: the correctness of the reward model's top pick among all K (reward ties split
  uniformly), and ``bon@n`` for n = 1..K: the expected correctness of the top pick among n responses
  drawn without replacement, computed exactly by the order statistics of ``rewardkit bench hacking``
  (:func:`rewardkit.eval.bon.bon_expectations`);
- ``brier``: over the same pairs, (1 - sigmoid(r_correct - r_incorrect))^2, averaged as ``accuracy``.

Overall numbers are means over the benchmarks present; ``score`` is the mean accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardkit.errors import DataError
from rewardkit.eval.bench_data import (
    BenchExample,
    BenchSpec,
    field_of,
    id_of,
    object_of,
    text_of,
    texts_of,
    user_turn,
)
from rewardkit.eval.bon import bon_expectations

SCORING_SOURCE = (
    "PPE (Frick et al., arXiv:2410.14872); lmarena/PPE not readable here (no snapshot, 2026-12-07): "
    "rules from the paper and the hub dataset cards"
)
PREFERENCE_CATEGORIES: tuple[str, ...] = (
    "hard_prompt",
    "easy_prompt",
    "if_prompt",
    "is_code",
    "math_prompt",
    "shorter_won",
    "similar_response",
    "english_prompt",
    "non_english_prompt",
    "chinese_prompt",
    "russian_prompt",
)
LANGUAGE_CATEGORIES = PREFERENCE_CATEGORIES[-4:]
ALL = "overall"
WINNERS = ("model_a", "model_b")
CORRECTNESS_HUB = tuple(
    (f"lmarena-ai/PPE-{b}-Best-of-K", "train") for b in ("MMLU-Pro", "MATH", "GPQA", "IFEval", "MBPP-Plus")
)


# ----------------------------------------------------------------------------- preference


def language_tags(rec: dict, where: str) -> dict[str, bool]:
    """The language categories of a hub row, which has a ``language`` string and no language booleans:
    English, Chinese, Russian and non-English (every other value) *(rewardkit: the rule lmarena/PPE
    applies could not be read)*; {} when the row gives any of the four booleans itself or no language."""
    if any(tag in rec for tag in LANGUAGE_CATEGORIES) or rec.get("language") is None:
        return {}
    language = rec["language"]
    if not isinstance(language, str):
        raise DataError(f"{where}: field 'language': expected a string, got {type(language).__name__}")
    return {
        "english_prompt": language == "English",
        "non_english_prompt": language != "English",
        "chinese_prompt": language == "Chinese",
        "russian_prompt": language == "Russian",
    }


def parse_preference(rec: Any, where: str) -> BenchExample:
    rec = object_of(rec, where)
    winner = text_of(rec, "winner", where)
    if winner not in WINNERS and not winner.startswith("tie"):
        raise DataError(
            f"{where}: field 'winner': expected 'model_a', 'model_b' or a tie ('tie...'), got {winner!r}"
        )
    tags = []
    derived = language_tags(rec, where)
    for tag in PREFERENCE_CATEGORIES:
        value = rec.get(tag, derived.get(tag))
        if value is not None and not isinstance(value, bool):
            raise DataError(f"{where}: field {tag!r}: expected true or false, got {value!r}")
        if value:
            tags.append(tag)
    completions = [text_of(rec, "response_1", where), text_of(rec, "response_2", where)]
    labels = {"winner": winner, "categories": tags}
    prompt = user_turn(text_of(rec, "prompt", where))
    return BenchExample(id_of(rec, "question_id", where), (ALL, *tags), prompt, completions, labels)


def preference_features(examples: list[BenchExample], rewards: list[np.ndarray]) -> np.ndarray:
    """[n, 1]: 1.0 where the human-preferred response has the strictly higher reward; NaN on human ties."""
    r = np.stack(rewards)
    winner = np.array([e.labels["winner"] for e in examples])
    right = np.where(winner == "model_a", r[:, 0] > r[:, 1], r[:, 1] > r[:, 0]).astype(np.float64)
    return np.where(np.isin(winner, WINNERS), right, np.nan)[:, None]


def preference_combine(means: dict[str, np.ndarray], counts: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {c: means[c][..., 0] for c in PREFERENCE_CATEGORIES if c in means}
    present = [out[c] for c in PREFERENCE_CATEGORIES if c in out]
    out["lower_bound"] = np.nanmin(np.stack(present), axis=0) if present else means[ALL][..., 0]
    out["score"] = means[ALL][..., 0]
    return out


def preference_row(example: BenchExample, rewards: np.ndarray) -> dict[str, Any]:
    return {
        "id": example.id,
        "winner": example.labels["winner"],
        "categories": example.labels["categories"],
        "score_1": float(rewards[0]),
        "score_2": float(rewards[1]),
    }


PPE_PREFERENCE = BenchSpec(
    name="ppe-preference",
    title="PPE Preference",
    hub=(("lmarena-ai/PPE-Human-Preference-V1", "test"),),
    scoring_source=SCORING_SOURCE,
    parse=parse_preference,
    features=preference_features,
    combine=preference_combine,
    row=preference_row,
    groups=(ALL, *PREFERENCE_CATEGORIES),
)


# ----------------------------------------------------------------------------- correctness


def _numbered(rec: dict, prefix: str) -> list[Any]:
    out, i = [], 1
    while f"{prefix}_{i}" in rec:
        out.append(rec[f"{prefix}_{i}"])
        i += 1
    return out


def _flags(values: list[Any], name: str, where: str) -> list[int]:
    for v in values:
        if isinstance(v, str) or v not in (0, 1):
            raise DataError(f"{where}: field {name!r}: correctness must be 0 / 1 / true / false, got {v!r}")
    return [int(v) for v in values]


def parse_correctness(rec: Any, where: str) -> BenchExample:
    rec = object_of(rec, where)
    if "responses" in rec:
        responses = texts_of(rec, "responses", where)
    else:
        responses = _numbered(rec, "response")
        if not responses:
            raise DataError(f"{where}: field 'response_1' missing (or give a list 'responses')")
        if not all(isinstance(r, str) for r in responses):
            raise DataError(f"{where}: field 'response_N': expected strings")
    if "scores" in rec:
        scores, name = field_of(rec, "scores", where), "scores"
        if not isinstance(scores, (list, tuple)):
            raise DataError(f"{where}: field 'scores': expected a list of 0 / 1")
    else:
        scores, name = _numbered(rec, "score"), "score_N"
    names = ("", name)
    if len(scores) != len(responses):
        raise DataError(
            f"{where}: field {names[1]!r}: {len(scores)} correctness labels for {len(responses)} responses"
        )
    flags = _flags(list(scores), names[1], where)
    benchmark = str(rec.get("benchmark") or "all").removeprefix("lmarena-ai/PPE-").removesuffix("-Best-of-K")
    prompt = user_turn(text_of(rec, "prompt", where))
    return BenchExample(
        id_of(rec, "question_id", where),
        (benchmark,),
        prompt,
        responses,
        {"correct": flags},
        (benchmark, rec["question_id"]),
    )


def check_correctness(examples: list[BenchExample]) -> None:
    """Every row has the same K (best-of-K compares the same K everywhere): else a one-line error naming
    the first row whose K differs and the first row, by file:line."""
    first = examples[0]
    odd = next((e for e in examples if len(e.completions) != len(first.completions)), None)
    if odd is not None:
        raise DataError(
            f"{odd.where}: field 'response_N' / 'responses': {len(odd.completions)} responses, but {first.where} "
            f"has {len(first.completions)}: best-of-K needs the same K on every row"
        )


def pair_stats(r: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """(accuracy, Brier) over the (correct, incorrect) pairs of one prompt's rewards ``r`` [K] and
    correctness ``c`` [K]; (NaN, NaN) when it has no such pair."""
    good, bad = r[c == 1], r[c == 0]
    if not good.size or not bad.size:
        return float("nan"), float("nan")
    margin = good[:, None] - bad[None, :]
    return float((margin > 0).mean()), float(((1.0 - 1.0 / (1.0 + np.exp(-margin))) ** 2).mean())


def correctness_features(examples: list[BenchExample], rewards: list[np.ndarray]) -> np.ndarray:
    """[n, 2 + K]: accuracy, Brier, then bon@1 .. bon@K."""
    r = np.stack(rewards)
    c = np.array([e.labels["correct"] for e in examples], dtype=np.float64)
    pairs = np.array([pair_stats(ri, ci) for ri, ci in zip(r, c)])
    bon, _ = bon_expectations(r, c, range(1, r.shape[1] + 1))
    return np.concatenate([pairs, bon], axis=1)


def correctness_combine(means: dict[str, np.ndarray], counts: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups = list(means)
    k = next(iter(means.values())).shape[-1] - 2
    for g in groups:
        out[f"{g}/accuracy"] = means[g][..., 0]
        out[f"{g}/best_of_k"] = means[g][..., -1]
        out[f"{g}/brier"] = means[g][..., 1]
    for n in range(1, k + 1):
        out[f"bon@{n}"] = _mean_over(means, 1 + n)
    out["best_of_k"] = out[f"bon@{k}"]
    out["brier"] = _mean_over(means, 1)
    out["score"] = _mean_over(means, 0)
    return out


def _mean_over(means: dict[str, np.ndarray], column: int) -> np.ndarray:
    """Mean over the benchmarks of one column, leaving out a benchmark where it is NaN (no prompt with
    both a correct and an incorrect response)."""
    stacked = np.stack([m[..., column] for m in means.values()])
    valid = ~np.isnan(stacked)
    with np.errstate(invalid="ignore"):
        return np.where(valid, stacked, 0.0).sum(0) / np.where(valid.any(0), valid.sum(0), np.nan)


def correctness_row(example: BenchExample, rewards: np.ndarray) -> dict[str, Any]:
    return {
        "id": example.id,
        "benchmark": example.groups[0],
        "scores": rewards.tolist(),
        "correct": example.labels["correct"],
    }


PPE_CORRECTNESS = BenchSpec(
    name="ppe-correctness",
    title="PPE Correctness",
    hub=CORRECTNESS_HUB,
    scoring_source=SCORING_SOURCE,
    parse=parse_correctness,
    features=correctness_features,
    combine=correctness_combine,
    row=correctness_row,
    groups=("MMLU-Pro", "MATH", "GPQA", "IFEval", "MBPP-Plus"),
    check=check_correctness,
    hub_tag="benchmark",
)
