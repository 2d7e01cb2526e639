"""Several requests' texts as one engine call and back: a job's units sliced out (:func:`slice_texts`),
pieces joined into one :class:`~rewardkit.templating.Texts` (:func:`concat_texts`), the call's values
split per piece (:func:`split_values`) and a job's parts joined in order (:func:`join_parts`). Pair
texts keep the engine's layout: all chosen sequences, then all rejected."""

from __future__ import annotations

import numpy as np

from rewardkit.templating import Texts


def slice_texts(texts: Texts, lo: int, hi: int) -> Texts:
    """Units ``lo:hi`` of ``texts`` (pairs for pair texts, else sequences)."""
    if texts.pairs is not None:
        return Texts.from_pairs(texts.pairs[lo:hi])
    return Texts(
        texts.prompts[lo:hi],
        texts.responses[lo:hi],
        reward_call=texts.reward_call,
        metadata=None if texts.metadata is None else texts.metadata[lo:hi],
        raw=texts.raw,
        special_tokens=texts.special_tokens,
        ids=None if texts.ids is None else texts.ids[lo:hi],
    )


def concat_texts(texts: list[Texts]) -> Texts:
    """One Texts of several pieces' sequences (pairs: all chosen, then all rejected)."""
    first = texts[0]
    if first.pairs is not None:
        return Texts.from_pairs([p for t in texts for p in t.pairs])
    meta = None
    if any(t.metadata is not None for t in texts):
        meta = [m for t in texts for m in (t.metadata or [{}] * len(t))]
    return Texts(
        [p for t in texts for p in t.prompts],
        [r for t in texts for r in t.responses],
        reward_call=first.reward_call,
        metadata=meta,
        raw=first.raw,
        special_tokens=first.special_tokens,
        ids=None if first.ids is None else [x for t in texts for x in t.ids],
    )


def split_values(values: np.ndarray, texts: list[Texts]) -> list[np.ndarray]:
    """Per-piece slices of pooled outputs (last axis: sequences), undoing :func:`concat_texts`."""
    if texts[0].pairs is not None:
        half = values.shape[-1] // 2
        chosen, rejected = values[..., :half], values[..., half:]
        out, lo = [], 0
        for t in texts:
            k = len(t.pairs)
            out.append(np.concatenate([chosen[..., lo : lo + k], rejected[..., lo : lo + k]], axis=-1))
            lo += k
        return out
    out, lo = [], 0
    for t in texts:
        out.append(values[..., lo : lo + len(t)])
        lo += len(t)
    return out


def join_parts(parts: list[np.ndarray], pairs: bool) -> np.ndarray:
    """A job's values from its parts in order (pairs: chosen of every part, then rejected)."""
    if len(parts) == 1:
        return parts[0]
    if not pairs:
        return np.concatenate(parts, axis=-1)
    halves = [p.shape[-1] // 2 for p in parts]
    chosen = [p[..., :h] for p, h in zip(parts, halves)]
    rejected = [p[..., h:] for p, h in zip(parts, halves)]
    return np.concatenate(chosen + rejected, axis=-1)
