"""RewardBench and RewardBench 2 data in their official layouts, from a local file or the hub, every
row checked: a malformed row or an unknown subset is a one-line ``DataError`` naming file:line and
field, or (``on_error="skip"``) a counted :class:`~rewardkit.data.SkippedRecord`, never dropped.

- v1 (``allenai/reward-bench``, split ``filtered``): ``prompt``, ``chosen``, ``rejected`` (strings),
  ``subset``, ``id``; ``chosen_model`` / ``rejected_model`` and any other field are kept as metadata.
- v2 (``allenai/reward-bench-2``, split ``test``): ``id``, ``prompt``, ``chosen`` and ``rejected``
  (lists of strings), ``num_correct`` (= len(chosen)), ``subset``; ``num_rejected`` and
  ``total_completions`` are checked when present; a non-Ties row is best-of-4 (1 correct, 3 rejected);
  Ties ids are ``ref:N`` / ``tied:N``.

Ids are unique as the official code compares them (``1`` and ``"1"`` are one id; ``ref:01`` and
``ref:1`` one Ties sample), so no row replaces another.

The prompt is a user turn, ``[{"role": "user", "content": prompt}]``, so each model's chat-template
convention applies (``rewardkit.templating``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rewardkit.data import SkippedRecord
from rewardkit.errors import DataError
from rewardkit.eval.bench_data import (
    check_records,
    field_of,
    id_of,
    id_text,
    no_rows_error,
    refuse_offline_hub,
    text_of,
    texts_of,
    user_turn,
)
from rewardkit.eval.rewardbench import TIES, TIES_ID, V1_SUBSETS, V2_CORRECT, V2_REJECTED, V2_SUBSETS
from rewardkit.readers import iter_source
from rewardkit.records import Message

SUITES: tuple[str, ...] = ("rewardbench", "rewardbench2")
#: suite -> (hub dataset, split) used when no local file is given
HUB: dict[str, tuple[str, str]] = {
    "rewardbench": ("allenai/reward-bench", "filtered"),
    "rewardbench2": ("allenai/reward-bench-2", "test"),
}


@dataclass(frozen=True)
class SuiteExample:
    """One prompt of a suite: ``completions`` in the dataset's order (v1: ``[chosen, rejected]``; v2:
    the ``num_correct`` correct ones first, then the rejected ones)."""

    id: str | int
    subset: str
    prompt: list[Message]
    completions: list[str]
    num_correct: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SuiteData:
    """The checked examples of one suite, what was skipped (with ``on_error="skip"``) and the source."""

    suite: str
    examples: list[SuiteExample]
    skipped: list[SkippedRecord]
    source: str

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def subsets(self) -> list[str]:
        """The suite's official subsets present in the data, in the official order."""
        present = {e.subset for e in self.examples}
        return [s for s in (V1_SUBSETS if self.suite == "rewardbench" else V2_SUBSETS) if s in present]

    @property
    def missing(self) -> list[str]:
        """The suite's official subsets absent from the data."""
        names = V1_SUBSETS if self.suite == "rewardbench" else V2_SUBSETS
        return [s for s in names if s not in set(self.subsets)]


def _int(rec: dict, name: str, where: str) -> int:
    value = field_of(rec, name, where)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: field {name!r}: expected an integer, got {value!r}")
    return value


def _subset(rec: dict, where: str, known: tuple[str, ...], suite: str) -> str:
    subset = text_of(rec, "subset", where)
    if subset not in known:
        raise DataError(
            f"{where}: field 'subset': {subset!r} is not a {suite} subset (known: {', '.join(known)})"
        )
    return subset


def id_key(example: SuiteExample) -> str:
    """The id as the official code compares ids: ``1`` and ``"1"`` are one id, as are ``ref:01`` and
    ``ref:1`` (a Ties sample is keyed by its kind and prompt number)."""
    value = example.id
    if isinstance(value, str):
        m = TIES_ID.match(value.strip()) if example.subset == TIES else None
        if m is not None:
            return f"{m.group(1)}:{int(m.group(2))}"
    return id_text(value)


def parse_v1(rec: Any, where: str) -> SuiteExample:
    """One RewardBench row (``where``: its file:line for errors)."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    subset = _subset(rec, where, V1_SUBSETS, "RewardBench")
    completions = [text_of(rec, "chosen", where), text_of(rec, "rejected", where)]
    meta = {k: v for k, v in rec.items() if k not in ("prompt", "chosen", "rejected")}
    return SuiteExample(
        id_of(rec, "id", where), subset, user_turn(text_of(rec, "prompt", where)), completions, 1, meta
    )


def parse_v2(rec: Any, where: str) -> SuiteExample:
    """One RewardBench 2 row (``where``: its file:line for errors)."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    subset = _subset(rec, where, V2_SUBSETS, "RewardBench 2")
    id_ = id_of(rec, "id", where)
    if subset == TIES and not (isinstance(id_, str) and TIES_ID.match(id_)):
        raise DataError(f"{where}: field 'id': a Ties id is 'ref:N' or 'tied:N', got {id_!r}")
    chosen, rejected = texts_of(rec, "chosen", where), texts_of(rec, "rejected", where)
    num_correct = _int(rec, "num_correct", where)
    if num_correct != len(chosen) or not chosen:
        raise DataError(
            f"{where}: field 'num_correct': {num_correct}, but 'chosen' holds {len(chosen)} completion(s)"
            + ("" if chosen else " (at least one is needed)")
        )
    if subset != TIES and (len(chosen), len(rejected)) != (V2_CORRECT, V2_REJECTED):
        field_, n, want = (
            ("chosen", len(chosen), V2_CORRECT)
            if len(chosen) != V2_CORRECT
            else ("rejected", len(rejected), V2_REJECTED)
        )
        raise DataError(
            f"{where}: field {field_!r}: a {subset} row is best-of-{V2_CORRECT + V2_REJECTED} "
            f"({V2_CORRECT} correct, {V2_REJECTED} rejected completions), got {n} {field_}"
        )
    for name, expected in (
        ("num_rejected", len(rejected)),
        ("total_completions", len(chosen) + len(rejected)),
    ):
        if name in rec and _int(rec, name, where) != expected:
            raise DataError(f"{where}: field {name!r}: {rec[name]}, but the row holds {expected}")
    meta = {k: v for k, v in rec.items() if k not in ("prompt", "chosen", "rejected")}
    return SuiteExample(
        id_, subset, user_turn(text_of(rec, "prompt", where)), chosen + rejected, num_correct, meta
    )


def _records(suite: str, data: Any) -> tuple[str, Any]:
    """(source name, iterator of (location, record or DataError)) of a local file / hub name / rows;
    the suite's hub dataset when ``data`` is None."""
    name, split = HUB[suite]
    if data is None:
        refuse_offline_hub(name)
        data = name
    try:
        return iter_source(data, split)
    except DataError as e:
        if data == name:
            raise DataError(f"{e}; pass a local copy, --data FILE") from None
        raise


def load_suite(suite: str, data: Any = None, *, on_error: Literal["raise", "skip"] = "raise") -> SuiteData:
    """The examples of ``suite`` (``"rewardbench"`` / ``"rewardbench2"``) from ``data``: a file
    (``.jsonl``, ``.json``, ``.parquet``, ``.csv``), a hub name, a list of dicts, or None for the
    official hub dataset. Ids must be unique (a repeated Ties id would replace a sample)."""
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {', '.join(SUITES)}; got {suite!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    parse = parse_v1 if suite == "rewardbench" else parse_v2
    source, records = _records(suite, data)
    examples, skipped = check_records(records, parse, id_key, on_error)
    if not examples:
        raise no_rows_error(source, suite, skipped)
    return SuiteData(suite, examples, skipped, source)
