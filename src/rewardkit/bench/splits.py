"""Shift splits from metadata: a training pool and ID / prompt-shift / response-shift / mixture splits.

Every pair gets a prompt side (ID, OOD or neither) and a response side (ID, OOD or neither) from a
:class:`~rewardkit.bench.shift_config.ShiftSpec`. The ID prompts are split *by prompt text* into training
prompts and held-out prompts, so no evaluation split contains a prompt the models were trained on:

=================  ===================  ==============
split              prompt side          response side
=================  ===================  ==============
train (pool)       ID, training prompts  ID
``id``             ID, held-out prompts  ID
``prompt_shift``   OOD                   ID
``response_shift`` ID, not trained on   OOD
``mixture``        OOD                   OOD
=================  ===================  ==============

Pairs that fit none of these (e.g. a pair with one ID and one OOD generator, or a source listed
nowhere) are counted in ``excluded`` with the reason.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rewardkit.bench.shift_config import ShiftSpec
from rewardkit.data import PreferenceDataset
from rewardkit.errors import DataError
from rewardkit.records import PreferencePair

ID, OOD = "id", "ood"


@dataclass
class ShiftSplits:
    train: PreferenceDataset
    splits: dict[str, PreferenceDataset]  # "id" first
    excluded: Counter = field(default_factory=Counter)
    sources: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "train_pool": len(self.train),
            "splits": {k: len(v) for k, v in self.splits.items()},
            "excluded": dict(self.excluded),
            "sources": self.sources,
        }


def _prompt_key(p: PreferencePair) -> Any:
    return p.prompt if isinstance(p.prompt, str) else tuple((m["role"], m["content"]) for m in p.prompt)


def _side(values: set[str], id_set: set[str] | None, ood_set: set[str] | None) -> str | None:
    """ID when every value is ID, OOD when every value is OOD, None when mixed or unlisted."""
    if id_set is None and ood_set is None:
        return ID
    is_id = (lambda v: v in id_set) if id_set is not None else (lambda v: v not in ood_set)
    is_ood = (lambda v: v in ood_set) if ood_set is not None else (lambda v: v not in id_set)
    if all(is_id(v) for v in values):
        return ID
    if all(is_ood(v) for v in values):
        return OOD
    return None


def _values(pair: PreferencePair, fields: list[str], ignore: set[str], index: int) -> set[str]:
    out = set()
    for f in fields:
        if f not in pair.metadata:
            raise DataError(f"pair {index}: metadata has no field {f!r} (fields: {sorted(pair.metadata)})")
        v = pair.metadata[f]
        if v is not None and str(v) not in ignore:
            out.add(str(v))
    return out


def make_shift_splits(
    pairs: PreferenceDataset,
    spec: ShiftSpec,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    mixture: bool = True,
) -> ShiftSplits:
    """Classify every pair and build the splits (see the module docstring). Splits with no pairs are
    left out; ``id`` must not be empty."""
    p_id = set(spec.id_prompts) if spec.id_prompts is not None else None
    p_ood = set(spec.ood_prompts) if spec.ood_prompts is not None else None
    r_id = set(spec.id_responses) if spec.id_responses is not None else None
    r_ood = set(spec.ood_responses) if spec.ood_responses is not None else None
    shared = set(spec.shared_responses)
    if p_id is None and p_ood is None and spec.prompt_field is not None:
        raise DataError("shift spec: set id_prompts (or ood_prompts) to define the prompt shift")
    if r_id is None and r_ood is None:
        response_fields: list[str] = []  # no response shift
    else:
        response_fields = spec.response_fields
    groups: dict[tuple[str | None, str | None], list[PreferencePair]] = {}
    excluded: Counter = Counter()
    seen_p: Counter = Counter()
    seen_r: Counter = Counter()
    for i, p in enumerate(pairs):
        if spec.prompt_field is None:
            ps = ID
        else:
            vals = _values(p, [spec.prompt_field], set(), i)
            seen_p.update(vals)
            ps = _side(vals, p_id, p_ood) if vals else None
        if response_fields:
            vals = _values(p, response_fields, shared, i)
            seen_r.update(vals)
            rs = _side(vals, r_id, r_ood) if vals else ID
        else:
            rs = ID
        if ps is None or rs is None:
            excluded["prompt source unlisted" if ps is None else "responses mix ID and OOD sources"] += 1
            continue
        groups.setdefault((ps, rs), []).append(p)
    id_pool = groups.get((ID, ID), [])
    if not id_pool:
        raise DataError(
            f"no pair has an ID prompt source and ID responses (prompt sources seen: {sorted(seen_p)[:20]})"
        )
    # hold out whole prompts: the ID prompts are split into training and evaluation prompts
    keys = sorted({_prompt_key(p) for p in id_pool}, key=repr)
    random.Random(seed).shuffle(keys)
    n_val = max(1, round(val_fraction * len(keys)))
    val_keys = set(keys[:n_val])
    train = [p for p in id_pool if _prompt_key(p) not in val_keys]
    train_keys = {_prompt_key(p) for p in train}
    splits = {
        "id": [p for p in id_pool if _prompt_key(p) in val_keys],
        "prompt_shift": groups.get((OOD, ID), []),
        "response_shift": [p for p in groups.get((ID, OOD), []) if _prompt_key(p) not in train_keys],
    }
    excluded["response shift on a training prompt"] += sum(
        _prompt_key(p) in train_keys for p in groups.get((ID, OOD), [])
    )
    if mixture:
        splits["mixture"] = groups.get((OOD, OOD), [])
    else:
        excluded["mixture (disabled)"] += len(groups.get((OOD, OOD), []))
    if not train or not splits["id"]:
        raise DataError(f"too few ID prompts ({len(keys)}) to hold out {val_fraction:.0%} for evaluation")
    src = pairs.source
    return ShiftSplits(
        train=PreferenceDataset(train, source=f"{src} [train]"),
        splits={k: PreferenceDataset(v, source=f"{src} [{k}]") for k, v in splits.items() if v},
        excluded=Counter({k: v for k, v in excluded.items() if v}),
        sources={"prompt": dict(seen_p), "response": dict(seen_r)},
    )
