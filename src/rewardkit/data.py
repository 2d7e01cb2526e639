"""Preference data: one record type, one loader, split helpers for shift experiments.

Every source (files, ``datasets.Dataset``, hub names, lists of dicts) and every record format
(explicit prompt, implicit shared prefix, conversational, HH-RLHF transcripts) is normalised to
``PreferencePair(prompt, chosen, rejected, metadata)``:

- ``prompt`` is a string or a list of chat messages ``[{"role": ..., "content": ...}, ...]``;
- ``chosen`` / ``rejected`` are the assistant responses as strings;
- ``metadata`` holds every other field of the record, untouched.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rewardkit.errors import DataError
from rewardkit.readers import iter_source
from rewardkit.records import PreferencePair, Prompt, degenerate, normalize_record

logger = logging.getLogger(__name__)

@dataclass
class SkippedRecord:
    location: str
    reason: str


class PreferenceDataset(Sequence[PreferencePair]):
    """An ordered list of :class:`PreferencePair` plus what the loader skipped (never silently).

    ``indices[i]``: position of pair i's record in its source (records counted from 0, skipped ones
    included), so outputs can be matched to input lines. ``issues``: degenerate pairs the loader kept,
    by kind (``"chosen == rejected"``, ...), as locations.
    """

    def __init__(
        self,
        pairs: Iterable[PreferencePair],
        skipped: list[SkippedRecord] | None = None,
        source: str = "<memory>",
        indices: Sequence[int] | None = None,
        issues: dict[str, list[str]] | None = None,
    ):
        self.pairs = list(pairs)
        self.skipped = skipped or []
        self.source = source
        self.indices = list(indices) if indices is not None else list(range(len(self.pairs)))
        if len(self.indices) != len(self.pairs):
            raise ValueError(f"{len(self.indices)} indices for {len(self.pairs)} pairs")
        self.issues = issues or {}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return PreferenceDataset(self.pairs[i], source=self.source, indices=self.indices[i])
        return self.pairs[i]

    def __iter__(self) -> Iterator[PreferencePair]:
        return iter(self.pairs)

    def __repr__(self) -> str:
        return f"PreferenceDataset(n={len(self)}, skipped={len(self.skipped)}, source={self.source!r})"

    @property
    def prompts(self) -> list[Prompt]:
        return [p.prompt for p in self.pairs]

    def _subset(self, keep: Sequence[int]) -> PreferenceDataset:
        """The pairs at positions ``keep``, with their record indices."""
        return PreferenceDataset(
            [self.pairs[i] for i in keep], source=self.source, indices=[self.indices[i] for i in keep]
        )

    def filter(self, fn: Callable[[PreferencePair], bool]) -> PreferenceDataset:
        return self._subset([i for i, p in enumerate(self.pairs) if fn(p)])

    def values(self, field_name: str) -> list[Any]:
        """Metadata values of ``field_name`` for every pair; raises if a pair lacks the field."""
        out = []
        for i, p in enumerate(self.pairs):
            if field_name not in p.metadata:
                raise DataError(f"{self.source}: pair {i} has no metadata field {field_name!r}")
            value = p.metadata[field_name]
            if not isinstance(value, (str, int, float, bool)) and value is not None:
                raise DataError(
                    f"{self.source}: pair {i}: field {field_name!r} holds a {type(value).__name__}, "
                    "not a single value (splits need a string or number per pair)"
                )
            out.append(value)
        return out

    def split(self, field_name: str, values: Iterable[Any]) -> tuple[PreferenceDataset, PreferenceDataset]:
        """``(pairs whose metadata[field_name] is in values, all other pairs)``.

        For shift experiments: ``id_set, ood_set = ds.split("subset", ["oasst", "helpful_base"])``.
        """
        wanted = set(values)
        keys = self.values(field_name)
        missing = wanted - set(keys)
        if missing:
            raise DataError(
                f"{self.source}: no pair has {field_name}={sorted(map(str, missing))}; "
                f"present: {sorted(map(str, set(keys)))}"
            )
        inside = [i for i, k in enumerate(keys) if k in wanted]
        outside = [i for i, k in enumerate(keys) if k not in wanted]
        return self._subset(inside), self._subset(outside)

    def group_by(self, field_name: str) -> dict[Any, PreferenceDataset]:
        """One dataset per distinct value of ``metadata[field_name]``, in first-seen order."""
        groups: dict[Any, list[int]] = {}
        for i, k in enumerate(self.values(field_name)):
            groups.setdefault(k, []).append(i)
        return {k: self._subset(v) for k, v in groups.items()}

    def shuffle(self, seed: int) -> PreferenceDataset:
        import random

        order = list(range(len(self)))
        random.Random(seed).shuffle(order)
        return self._subset(order)

    def train_test_split(
        self, test_fraction: float, seed: int
    ) -> tuple[PreferenceDataset, PreferenceDataset]:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        shuffled = self.shuffle(seed)
        n_test = max(1, round(len(self) * test_fraction))
        return shuffled[n_test:], shuffled[:n_test]

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, **p.metadata} for p in self.pairs
        ]

    def save_jsonl(self, path: str | os.PathLike) -> None:
        from rewardkit.io import atomic_write_text, dumps

        atomic_write_text(path, "".join(dumps(r) + "\n" for r in self.to_records()))


def load_preferences(
    source: Any,
    *,
    split: str = "train",
    on_error: Literal["raise", "skip"] = "raise",
    columns: dict[str, str] | None = None,
    limit: int | None = None,
) -> PreferenceDataset:
    """Load preference pairs from a file, a ``datasets.Dataset``, a hub name or a list of dicts.

    Files: ``.jsonl``, ``.jsonl.gz``, ``.json``, ``.parquet``, ``.csv``. Record formats are detected per
    record (see module docstring). ``columns`` maps the canonical names ``prompt``/``chosen``/``rejected``
    to the record's field names, e.g. ``{"prompt": "question"}``.

    ``on_error="raise"`` stops at the first malformed record with ``file:line: field ...``;
    ``on_error="skip"`` keeps going, stores every skipped record in ``dataset.skipped`` and logs a count.
    """
    name, records = iter_source(source, split)
    return collect_pairs(name, records, on_error=on_error, columns=columns, limit=limit)


class Excluded(Exception):
    """Raised by a record transform for a record it leaves out on purpose (a tie, a duplicate): the
    record is counted as skipped, with the reason, whatever ``on_error`` says."""


def collect_pairs(
    name: str,
    records: Iterable[tuple[str, Any]],
    *,
    on_error: Literal["raise", "skip"] = "raise",
    columns: dict[str, str] | None = None,
    limit: int | None = None,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    schema: str | None = None,
    what: str = "valid preference pairs",
) -> PreferenceDataset:
    """The one record loop: ``(location, record or DataError)`` -> :class:`PreferenceDataset`.

    ``transform`` maps a raw record to the canonical fields first (a recipe's schema); it may raise
    :class:`Excluded`, and a ``KeyError`` / ``TypeError`` / ``IndexError`` in it is a record that does not
    match its schema. Malformed records raise, or with ``on_error="skip"`` are kept in ``skipped``."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    pairs: list[PreferencePair] = []
    indices: list[int] = []
    skipped: list[SkippedRecord] = []
    issues: dict[str, list[str]] = {}
    prompt_col = (columns or {}).get("prompt", "prompt")
    has_prompt: bool | None = None  # the source's format, from its first record
    for index, (where, rec) in enumerate(records):
        try:
            if isinstance(rec, DataError):
                raise rec
            if transform is not None:
                if not isinstance(rec, dict):
                    raise DataError(f"{where}: expected a JSON object")
                try:
                    rec = transform(rec)
                except (KeyError, TypeError, IndexError) as e:
                    raise DataError(
                        f"{where}: record does not match the {schema or name} schema ({type(e).__name__}: {e})"
                    ) from None
            if has_prompt is None and isinstance(rec, dict):
                has_prompt = prompt_col in rec
            pair = normalize_record(rec, where, columns, has_prompt)
        except Excluded as e:
            skipped.append(SkippedRecord(where, str(e)))
            continue
        except DataError as e:
            if on_error == "raise":
                raise
            skipped.append(SkippedRecord(where, str(e)))
            continue
        for kind in degenerate(pair):
            issues.setdefault(kind, []).append(where)
        pairs.append(pair)
        indices.append(index)
        if limit is not None and len(pairs) >= limit:
            break
    if skipped:
        logger.warning(
            "%s: skipped %d record(s) of %d: %s",
            name,
            len(skipped),
            len(skipped) + len(pairs),
            "; ".join(s.reason for s in skipped[:3])
            + (f"; +{len(skipped) - 3} more" if len(skipped) > 3 else ""),
        )
    for kind, where in issues.items():  # kept (training on them can be legitimate), never hidden
        logger.warning("%s: %d pair(s) with %s (first: %s)", name, len(where), kind, where[0])
    if not pairs:
        raise DataError(f"{name}: no {what}" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return PreferenceDataset(pairs, skipped, source=name, indices=indices, issues=issues)


def as_pairs(data: Any) -> PreferenceDataset:
    """Accept a PreferenceDataset, a list of PreferencePair, or anything ``load_preferences`` takes."""
    if isinstance(data, PreferenceDataset):
        return data
    if isinstance(data, (list, tuple)) and data and all(isinstance(p, PreferencePair) for p in data):
        return PreferenceDataset(data)
    return load_preferences(data)
