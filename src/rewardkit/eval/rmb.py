"""RMB (Zhou et al., ICLR 2025, arXiv:2410.09893): pairwise and best-of-N sets over 49 scenarios of two
alignment goals, helpfulness and harmlessness.

**Source.** Zhou-Zoey/RMB-Reward-Model-Benchmark at commit 2be3180857f2190b7ffa929d43190835627f1f4d
(2025-03-25): the data layout of ``RMB_dataset/`` and the pairwise scoring of ``eval/scripts/my_run_rm.py``
(with ``eval/scripts/my_utils/utils.py``'s ``load_eval_dataset``). The repository has no best-of-N scorer
(its README says "coming soon"); the best-of-N rule below is the paper's.

**Layout.** ``RMB_dataset/{Pairwise_set,BoN_set}/{Helpfulness,Harmlessness}/.../<scenario>.json``, each a
JSON list; every row holds ``conversation_input`` (turns of ``role`` / ``content``, ending with the user's)
and ``category_path`` (the file's path under ``RMB_dataset`` without ``.json``). A pairwise row holds
``pair_uid``, ``chosen`` and ``reject`` (each ``{"llm_name", "answer"}``); a best-of-N row holds ``bon_uid``,
``bon_best`` and ``loser_list`` (2 to 6 answers in the release). ``--data`` takes the folder (every
``.json`` under it, sorted; links to folders are not followed) or one file.

**Scoring.** A pair is right when r(chosen) > r(reject), strictly: ``my_run_rm.py``'s ``1 if chosen >
rejected else 0``, so a reward tie is wrong. A best-of-N list is right when r(bon_best) is strictly higher
than every loser's (the paper's rule, with the official code's strict comparison). The official script
prints one accuracy over every row of the files it is given (``ACC``, a mean over rows, not over
files): ``Pairwise_set/Helpfulness`` etc. here are that number for each set and goal, and each scenario's
accuracy is reported under its ``category_path``. ``score`` is the mean of the four set-and-goal
accuracies present *(rewardkit: neither the code nor the data defines an overall number)*.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.errors import DataError
from rewardkit.eval.bench_data import BenchExample, BenchSpec, field_of, id_of, object_of
from rewardkit.readers import iter_source

SCORING_SOURCE = (
    "Zhou-Zoey/RMB-Reward-Model-Benchmark eval/scripts/my_run_rm.py (pairwise ACC), RMB_dataset/ layout "
    "@ 2be3180857f2190b7ffa929d43190835627f1f4d; best-of-N rule from the paper (arXiv:2410.09893)"
)
SOURCE = "github.com/Zhou-Zoey/RMB-Reward-Model-Benchmark"
SETS: dict[str, str] = {"Pairwise_set": "pair_uid", "BoN_set": "bon_uid"}
GOALS: tuple[str, ...] = ("Helpfulness", "Harmlessness")
#: the set-and-goal groups, in the report's order (``score`` is their mean)
HEADLINE: tuple[str, ...] = tuple(f"{s}/{g}" for s in SETS for g in GOALS)
ROLES = ("system", "user", "assistant")


def read_rmb(data: Any) -> list[tuple[str, Any]]:
    """(source, records) per file: every ``.json`` under a folder (sorted, links to folders not followed), a file,
    or rows; None is an error, RMB having no hub dataset."""
    if data is None:
        raise DataError(
            f"rmb: no hub dataset; its data is the RMB_dataset folder of {SOURCE}: "
            "clone it and pass --data RMB_dataset"
        )
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        files = sorted(
            Path(root) / name for root, _, names in os.walk(data) for name in names if name.endswith(".json")
        )
        if not files:
            raise DataError(f"{data}: no .json files (expected RMB_dataset/Pairwise_set, BoN_set)")
        return [iter_source(f, "train") for f in files]
    return [iter_source(data, "train")]


def _conversation(rec: dict, where: str) -> list[dict[str, str]]:
    turns = field_of(rec, "conversation_input", where)
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: field 'conversation_input': expected a non-empty list of turns")
    out = []
    for i, t in enumerate(turns):
        if not (isinstance(t, dict) and t.get("role") in ROLES and isinstance(t.get("content"), str)):
            raise DataError(
                f"{where}: field 'conversation_input[{i}]': expected a turn with 'role' "
                f"({' / '.join(ROLES)}) and a string 'content'"
            )
        out.append({"role": t["role"], "content": t["content"]})
    if out[-1]["role"] != "user":
        raise DataError(f"{where}: field 'conversation_input': the last turn must be the user's")
    return out


def _answer(value: Any, name: str, where: str) -> str:
    if not (isinstance(value, dict) and isinstance(value.get("answer"), str)):
        raise DataError(f"{where}: field {name!r}: expected an object with a string 'answer'")
    return value["answer"]


def parse_row(rec: Any, where: str) -> BenchExample:
    """One pairwise or best-of-N row (which one: its ``category_path``'s first part)."""
    rec = object_of(rec, where)
    path = field_of(rec, "category_path", where)
    parts = path.split("/") if isinstance(path, str) else []
    if len(parts) < 3 or parts[0] not in SETS or parts[1] not in GOALS or not all(parts):
        raise DataError(
            f"{where}: field 'category_path': expected '{{Pairwise_set|BoN_set}}/{{Helpfulness|"
            f"Harmlessness}}/<scenario>', got {path!r}"
        )
    kind = parts[0]
    if kind == "Pairwise_set":
        completions = [
            _answer(field_of(rec, "chosen", where), "chosen", where),
            _answer(field_of(rec, "reject", where), "reject", where),
        ]
    else:
        losers = field_of(rec, "loser_list", where)
        if not isinstance(losers, list) or not losers:
            raise DataError(f"{where}: field 'loser_list': expected a non-empty list of answers")
        completions = [_answer(field_of(rec, "bon_best", where), "bon_best", where)]
        completions += [_answer(v, f"loser_list[{i}]", where) for i, v in enumerate(losers)]
    uid = id_of(rec, SETS[kind], where)
    groups = (f"{parts[0]}/{parts[1]}", path)
    return BenchExample(uid, groups, _conversation(rec, where), completions, {"path": path}, key=(kind, uid))


def is_correct(rewards: np.ndarray) -> float:
    """1.0 when the first reward (chosen / bon_best) is strictly above every other one."""
    return float(rewards[0] > np.max(rewards[1:]))


def features(examples: list[BenchExample], rewards: list[np.ndarray]) -> np.ndarray:
    """[n, 1] right (1) or wrong (0) per pair or list."""
    return np.array([[is_correct(r)] for r in rewards], dtype=np.float64).reshape(-1, 1)


def combine(means: dict[str, np.ndarray], counts: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {g: means[g][..., 0] for g in HEADLINE if g in means}
    out["score"] = np.mean([out[g] for g in HEADLINE if g in out], axis=0)
    out.update({g: means[g][..., 0] for g in sorted(means) if g not in HEADLINE})
    return out


def row(example: BenchExample, rewards: np.ndarray) -> dict[str, Any]:
    """The official result file's fields (``my_run_rm.py``), and for a list every loser's reward."""
    path = example.labels["path"]
    if path.startswith("Pairwise_set/"):
        rewards_of = {"chosen_reward": float(rewards[0]), "reject_reward": float(rewards[1])}
    else:
        rewards_of = {"bon_best_reward": float(rewards[0]), "loser_rewards": [float(x) for x in rewards[1:]]}
    return {"id": example.id, "category_path": path, **rewards_of, "is_correct": int(is_correct(rewards))}


RMB = BenchSpec(
    name="rmb",
    title="RMB",
    hub=(),
    scoring_source=SCORING_SOURCE,
    parse=parse_row,
    features=features,
    combine=combine,
    row=row,
    groups=HEADLINE,
    read=read_rmb,
)
