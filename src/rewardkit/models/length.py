"""Length-penalised rewards (CourseGPT-zh, Eq. 1): reward models and LLM judges favour long answers, so a
response longer than a reference (human) answer loses reward in proportion to the excess:

    s = s_judge                                    if l_res <= l_ref
    s = s_judge - w * (l_res / l_ref - 1)          otherwise            (w = 0.5 in the paper: alpha)

:class:`LengthPenalizedRM` wraps any reward model (explicit, implicit, ensemble, merged). The reference
length comes from a record field (a reference text, whose length is measured, or a number), a fixed
number, or a callable; lengths are counted in ``tokens`` (the wrapped model's tokenizer), ``chars`` or
``words``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.base import Loader, RewardModel
from rewardkit.errors import DataError, ModelError
from rewardkit.io import atomic_dir
from rewardkit.manifest import member_folder, write_manifest
from rewardkit.records import Prompt
from rewardkit.templating import UNITS, Texts, Unit, text_length

Reference = str | float | int | Callable[[Prompt, str], float]


def length_penalty(response_length: np.ndarray, reference_length: np.ndarray, weight: float) -> np.ndarray:
    """``weight * max(0, l_res / l_ref - 1)``, elementwise ([n] arrays; ``l_ref > 0``)."""
    ratio = np.asarray(response_length, dtype=np.float64) / np.asarray(reference_length, dtype=np.float64)
    return weight * np.maximum(0.0, ratio - 1.0)


@dataclass(frozen=True)
class PenalizedScores:
    """[n] arrays: the wrapped model's ``raw`` reward, the ``penalty`` and ``reward = raw - penalty``, with
    the response and reference lengths (in the model's unit)."""

    raw: np.ndarray
    penalty: np.ndarray
    reward: np.ndarray
    length: np.ndarray
    reference_length: np.ndarray


class LengthPenalizedRM(RewardModel):
    """``rm``'s reward minus ``length_penalty * max(0, l_res / l_ref - 1)`` (CourseGPT-zh Eq. 1, its alpha).

    ``reference``: a record field name (its value a reference text, measured in ``unit``, or a number:
    the reference length), a fixed length, or a callable ``(prompt, response) -> length``. Record fields
    come from the pairs' metadata (``score_pairs``), the dataset columns a TRL trainer passes to
    ``rm(prompts, completions, **columns)``, or ``score(..., references=[...])``.
    """

    kind = "length_penalized"

    def __init__(
        self,
        rm: RewardModel,
        length_penalty: float = 0.5,
        reference: Reference = "reference",
        unit: Unit = "tokens",
        tokenizer=None,
    ):
        if not (
            isinstance(length_penalty, (int, float)) and np.isfinite(length_penalty) and length_penalty >= 0
        ):
            raise ModelError(f"length_penalty must be a non-negative finite number, got {length_penalty!r}")
        if unit not in UNITS:
            raise ModelError(f"unit must be one of {UNITS}, got {unit!r}")
        if isinstance(reference, (int, float)) and not (np.isfinite(reference) and reference > 0):
            raise ModelError(f"a fixed reference length must be positive and finite, got {reference!r}")
        self.rm, self.length_penalty, self.reference, self.unit = rm, float(length_penalty), reference, unit
        if tokenizer is None:  # the model's own, or (an ensemble) its first member's
            members = [rm, *getattr(rm, "members", [])]
            tokenizer = next(
                (m.tokenizer for m in members if getattr(m, "tokenizer", None) is not None), None
            )
        self.tokenizer = tokenizer
        if unit == "tokens" and self.tokenizer is None:
            raise ModelError(
                "length unit 'tokens' needs a tokenizer and the wrapped model has none (e.g. a served model): "
                "use unit 'chars' or 'words' (--length-unit), or pass tokenizer="
            )
        self.source: str | None = None

    def reference_lengths(self, texts: Texts, references: Sequence[Any] | None = None) -> np.ndarray:
        """[n] reference lengths in ``unit`` (> 0): from ``references``, the fixed length, the callable, or
        the record field."""
        n = len(texts)
        if references is not None:
            values = list(references)
        elif isinstance(self.reference, (int, float)):
            return np.full(n, float(self.reference))
        elif callable(self.reference):
            values = [self.reference(p, r) for p, r in zip(texts.prompts, texts.responses)]
        else:
            meta = texts.metadata or [{}] * n
            values = []
            for i, m in enumerate(meta):
                if self.reference not in m or m[self.reference] is None:
                    raise DataError(
                        f"example {i}: no reference field {self.reference!r} for the length penalty"
                    )
                values.append(m[self.reference])
        if len(values) != n:
            raise DataError(f"got {len(values)} references for {n} responses")
        out = np.empty(n)
        texts_at = [i for i, v in enumerate(values) if isinstance(v, str)]
        if texts_at:  # each distinct reference measured once (a pair's two responses share theirs)
            distinct = list(dict.fromkeys(values[i] for i in texts_at))
            length = dict(zip(distinct, text_length(distinct, self.unit, self.tokenizer)))
            out[texts_at] = [length[values[i]] for i in texts_at]
        for i, v in enumerate(values):
            if isinstance(v, str):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise DataError(f"example {i}: reference must be a text or a length, got {type(v).__name__}")
            out[i] = float(v)
        bad = np.flatnonzero(~(np.isfinite(out) & (out > 0)))
        if bad.size:
            raise DataError(f"example {int(bad[0])}: reference length {out[bad[0]]} (must be positive)")
        return out

    @property
    def members(self) -> list[RewardModel]:  # type: ignore[override]
        return [self.rm]

    @property
    def formatter(self):  # type: ignore[override]
        return self.rm.formatter

    def describe(self) -> dict[str, Any]:
        ref = self.reference if isinstance(self.reference, (str, int, float)) else "callable"
        return {
            **super().describe(),
            "length_penalty": self.length_penalty,
            "unit": self.unit,
            "reference": ref,
            "wrapped": self.rm.describe(),
        }

    def detailed(
        self, texts: Texts, references: Sequence[Any] | None = None, raw: np.ndarray | None = None
    ) -> PenalizedScores:
        """Raw reward, penalty and penalised reward apart (e.g. for eval tables and the CLI). ``raw``: the
        wrapped model's rewards of ``texts`` when the caller has them already (nothing is scored twice)."""
        ref = self.reference_lengths(texts, references)
        raw = np.asarray(self.rm.score_texts(texts) if raw is None else raw, dtype=np.float64)
        length = text_length(texts.responses, self.unit, self.tokenizer)
        pen = length_penalty(length, ref, self.length_penalty)
        return PenalizedScores(raw, pen, raw - pen, length, ref)

    def score_texts(self, texts: Texts) -> np.ndarray:
        return self.detailed(texts).reward.astype(np.float32)

    def score_texts_reusing(self, texts: Texts, known: Mapping[int, np.ndarray]) -> np.ndarray:
        """The penalised reward over the wrapped model's rewards when they are known."""
        raw = known.get(id(self.rm))
        return (
            super().score_texts_reusing(texts, known) if raw is None else self.detailed(texts, raw=raw).reward
        )

    def score(
        self, prompts: Sequence[Prompt], responses: Sequence[str], references: Sequence[Any] | None = None
    ) -> np.ndarray:
        """One penalised reward per (prompt, response); ``references``: one reference text or length each
        (needed when the reference is a record field and there are no records)."""
        return self.detailed(Texts.of(prompts, responses), references).reward.astype(np.float32)

    def score_columns(self, texts: Texts) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The penalised reward, with the ``raw`` reward and the ``penalty`` apart."""
        d = self.detailed(texts)
        return d.reward.astype(np.float32), {"raw": d.raw, "penalty": d.penalty}

    def named_inputs(self) -> list[Path]:
        return self.rm.named_inputs()

    def save(self, path: str | os.PathLike, *, force: bool = False) -> None:
        """The wrapped model under ``model/`` beside the manifest (length_penalty, unit, reference)."""
        if callable(self.reference):
            raise ModelError(
                "a LengthPenalizedRM with a callable reference cannot be saved: use a field or a number"
            )
        ref = (
            {"field": self.reference}
            if isinstance(self.reference, str)
            else {"length": float(self.reference)}
        )
        with atomic_dir(path, force=force) as tmp:
            self.rm.save(Path(tmp) / "model")
            write_manifest(
                tmp,
                self._manifest(
                    length_penalty=self.length_penalty, unit=self.unit, length_reference=ref, model="model"
                ),
            )

    @classmethod
    def _load(
        cls, path: Path, manifest: dict[str, Any], *, load_member: Loader | None = None, **kwargs: Any
    ) -> LengthPenalizedRM:
        ref = manifest.get("length_reference") or {}
        if not isinstance(ref, dict) or not ({"field", "length"} & set(ref)):
            raise ModelError(f"{path}: manifest field 'length_reference' must hold 'field' or 'length'")
        if load_member is None:
            raise ModelError(f"{path}: a wrapper loads through rewardkit.load_reward_model")
        inner = load_member(member_folder(path, str(manifest.get("model") or "model"), "wrapper"))
        rm = cls(
            inner,
            manifest.get("length_penalty", 0.5),
            ref.get("field", ref.get("length")),
            manifest.get("unit", "tokens"),
        )
        rm.source = str(path)
        return rm
