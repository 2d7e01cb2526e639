"""Rows of the report-card suites (RM-Bench, JudgeBench, PPE): one :class:`BenchSpec` per suite says how a
row is read and scored; this module reads a local file in the official layout or the official hub
dataset(s), checks every row (a one-line ``DataError`` naming file:line and field, or with
``on_error="skip"`` a counted :class:`~rewardkit.data.SkippedRecord`), refuses repeated ids, and scores
every (prompt, completion) of the suite in one engine call per model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from rewardkit.accuracy import check_finite
from rewardkit.base import RewardModel
from rewardkit.data import SkippedRecord
from rewardkit.errors import DataError, ModelError
from rewardkit.readers import iter_source
from rewardkit.records import Message
from rewardkit.templating import Texts

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@dataclass(frozen=True)
class BenchExample:
    """One prompt of a suite: its official ``id``, the ``groups`` it counts in (a domain, a category),
    the prompt as a user turn, the ``completions`` scored, in the suite's order, and the ``labels`` the
    scoring reads beside the rewards (a verdict, correctness flags). ``key``: what must be unique;
    ``where``: the row's location (file:line), which :func:`load_bench` sets, for errors across rows."""

    id: str | int
    groups: tuple[str, ...]
    prompt: list[Message]
    completions: list[str]
    labels: dict[str, Any] = field(default_factory=dict)
    key: Any = None
    where: str = ""


@dataclass(frozen=True)
class BenchSpec:
    """How one suite reads and scores its rows.

    ``parse(record, where)`` -> :class:`BenchExample` (raises ``DataError``); ``features(examples,
    rewards)`` -> [n, F] per-example credit (NaN: the example does not count in that column);
    ``combine({group: [..., F] means}, {group: n})`` -> {metric: [...]} with ``"score"`` (the headline),
    evaluated on the full data and on every bootstrap resample; ``row(example, rewards)`` -> the
    per-example JSONL fields; ``check(examples)``: checks across rows (equal shapes);
    ``scoring_source``: the official code (file @ commit) or paper the scoring follows, in every report."""

    name: str
    title: str
    hub: tuple[tuple[str, str], ...]
    scoring_source: str
    parse: Callable[[Any, str], BenchExample]
    features: Callable[[list[BenchExample], list[np.ndarray]], np.ndarray]
    combine: Callable[[dict[str, np.ndarray], dict[str, int]], dict[str, Any]]
    row: Callable[[BenchExample, np.ndarray], dict[str, Any]]
    groups: tuple[str, ...] = ()
    check: Callable[[list[BenchExample]], None] | None = None
    #: a field each hub row gets (when absent) naming the hub dataset it came from (several hub datasets)
    hub_tag: str | None = None
    #: how ``data`` is read when the suite's layout is not one file or hub dataset (a folder of files):
    #: ``read(data)`` -> [(source, records)]; it raises ``DataError`` where it has no source
    read: Callable[[Any], list[tuple[str, Any]]] | None = None


@dataclass
class BenchData:
    """The checked examples of one suite, what was skipped and the source."""

    spec: BenchSpec
    examples: list[BenchExample]
    skipped: list[SkippedRecord]
    source: str

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def groups(self) -> list[str]:
        """The groups present, the suite's official ones first in the official order."""
        present = {g for e in self.examples for g in e.groups}
        rest = sorted(present - set(self.spec.groups))
        return [g for g in self.spec.groups if g in present] + rest

    @property
    def missing(self) -> list[str]:
        present = set(self.groups)
        return [g for g in self.spec.groups if g not in present]


# ----------------------------------------------------------------------------- field readers


def field_of(rec: dict, name: str, where: str) -> Any:
    if name not in rec:
        raise DataError(f"{where}: field {name!r} missing")
    return rec[name]


def text_of(rec: dict, name: str, where: str) -> str:
    value = field_of(rec, name, where)
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r}: expected a string, got {type(value).__name__}")
    return value


def texts_of(rec: dict, name: str, where: str, length: int | None = None) -> list[str]:
    value = field_of(rec, name, where)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: field {name!r}: expected a list of strings")
    if length is not None and len(value) != length:
        raise DataError(f"{where}: field {name!r}: expected {length} strings, got {len(value)}")
    return list(value)


def id_of(rec: dict, name: str, where: str) -> str | int:
    value = field_of(rec, name, where)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: field {name!r}: expected a string or an integer, got {value!r}")
    return value


def object_of(rec: Any, where: str) -> dict:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    return rec


def user_turn(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


# ----------------------------------------------------------------------------- loading


def refuse_offline_hub(name: str) -> None:
    """A ``DataError`` (that says to pass a local copy) when ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``
    is set: a hub dataset is not even tried."""
    offline = [v for v in _OFFLINE_VARS if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")]
    if offline:
        raise DataError(
            f"{name}: not loaded from the hub ({offline[0]} is set): pass a local copy, --data FILE"
        )


def _hub_records(name: str, split: str):
    refuse_offline_hub(name)
    try:
        return iter_source(name, split)
    except DataError as e:
        raise DataError(f"{str(e).splitlines()[0]}; pass a local copy, --data FILE") from None


def id_text(value: Any) -> str:
    """An id as every suite compares ids: as text, stripped, a number in one spelling, so ``1``, ``"1"``
    and ``" 01"`` are one id (a JSON file beside a CSV or parquet copy, or a per-example file joined on
    ``id``, could not tell them apart)."""
    text = value.strip() if isinstance(value, str) else str(value)
    return str(int(text)) if text.lstrip("+-").isdigit() else text


def id_key(example: BenchExample) -> str | tuple[str, ...]:
    """What must be unique: the example's ``key`` (or ``id``), each part by :func:`id_text`."""
    key = example.id if example.key is None else example.key
    return tuple(id_text(k) for k in key) if isinstance(key, tuple) else id_text(key)


def check_records(
    records: Iterable[tuple[str, Any]],
    parse: Callable[[Any, str], Any],
    key: Callable[[Any], Hashable],
    on_error: Literal["raise", "skip"],
) -> tuple[list[Any], list[SkippedRecord]]:
    """Every (location, record) parsed by ``parse``, or a reader's ``DataError`` in its place; a key seen
    before is a ``DataError`` naming both locations. ``on_error="skip"``: such rows become counted
    :class:`~rewardkit.data.SkippedRecord` s instead of raising. Returns (examples, skipped)."""
    examples: list[Any] = []
    skipped: list[SkippedRecord] = []
    seen: dict[Hashable, str] = {}
    for where, rec in records:
        try:
            if isinstance(rec, DataError):
                raise rec
            example = parse(rec, where)
            k = key(example)
            if k in seen:
                raise DataError(f"{where}: field 'id': {example.id!r} repeats the id of {seen[k]} (as {k!r})")
        except DataError as e:
            if on_error == "raise":
                raise
            skipped.append(SkippedRecord(where, str(e)))
            continue
        seen[k] = where
        examples.append(example)
    return examples, skipped


def no_rows_error(source: str, name: str, skipped: list[SkippedRecord]) -> DataError:
    return DataError(f"{source}: no valid {name} rows" + (f" ({len(skipped)} skipped)" if skipped else ""))


def _tagged(records, tag: str, value: str):
    for where, rec in records:
        yield where, {tag: value, **rec} if isinstance(rec, dict) else rec


def load_bench(
    spec: BenchSpec, data: Any = None, *, on_error: Literal["raise", "skip"] = "raise"
) -> BenchData:
    """The examples of ``spec`` from ``data`` (a file in the official layout: ``.jsonl``, ``.json``,
    ``.parquet``, ``.csv``; a list of dicts; None: the official hub dataset(s))."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if spec.read is not None:
        sources = spec.read(data)
    elif data is None:
        sources = [_hub_records(name, split) for name, split in spec.hub]
        if spec.hub_tag:
            sources = [
                (s, _tagged(rows, spec.hub_tag, name)) for (s, rows), (name, _) in zip(sources, spec.hub)
            ]
    else:
        repo = data.partition("@")[0] if isinstance(data, str) else None
        sources = [iter_source(data, dict(spec.hub).get(repo, spec.hub[0][1]))]
        if spec.hub_tag and repo in dict(spec.hub):  # one of the suite's hub datasets, maybe pinned
            sources = [(s, _tagged(rows, spec.hub_tag, repo)) for s, rows in sources]
    records = (record for _, rows in sources for record in rows)
    examples, skipped = check_records(
        records, lambda r, w: replace(spec.parse(r, w), where=w), id_key, on_error
    )
    folder = spec.read is not None and isinstance(data, (str, os.PathLike))
    source = str(data) if folder else ", ".join(s for s, _ in sources)
    if not examples:
        raise no_rows_error(source, spec.name, skipped)
    if spec.check is not None:
        spec.check(examples)
    return BenchData(spec, examples, skipped, source)


# ----------------------------------------------------------------------------- scoring


def bench_texts(data: BenchData) -> Texts:
    """Every (prompt, completion) of the suite, each prompt's completions in the suite's order."""
    rows = [(e, c) for e in data.examples for c in e.completions]
    return Texts([e.prompt for e, _ in rows], [c for _, c in rows])


def score_bench(rm: RewardModel, data: BenchData, texts: Texts | None = None) -> list[np.ndarray]:
    """One engine call: per-example reward arrays ([k_i] each, float64) in the dataset's order."""
    texts = bench_texts(data) if texts is None else texts
    rewards, _ = rm.score_columns(texts)
    flat = check_finite(rewards, f"{data.spec.name} rewards").astype(np.float64)
    ends = np.cumsum([len(e.completions) for e in data.examples])
    return np.split(flat, ends[:-1])


def score_models(rms: dict[str, RewardModel], data: BenchData) -> dict[str, list[np.ndarray]]:
    texts = bench_texts(data)
    out = {}
    for name, rm in rms.items():
        try:
            out[name] = score_bench(rm, data, texts)
        except ModelError as e:
            raise ModelError(f"{name}: {e}") from None
    return out


def membership(examples: Sequence[BenchExample], groups: Sequence[str]) -> np.ndarray:
    """[n, G] True where example i counts in group g."""
    index = {g: j for j, g in enumerate(groups)}
    m = np.zeros((len(examples), len(groups)), dtype=bool)
    for i, e in enumerate(examples):
        for g in e.groups:
            m[i, index[g]] = True
    return m
