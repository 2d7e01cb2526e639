"""Preference data: one record type, one loader, split helpers for shift experiments.

Every source (files, ``datasets.Dataset``, hub names, lists of dicts) and every record format
(explicit prompt, implicit shared prefix, conversational, HH-RLHF transcripts) is normalised to
``PreferencePair(prompt, chosen, rejected, metadata)``:

- ``prompt`` is a string or a list of chat messages ``[{"role": ..., "content": ...}, ...]``;
- ``chosen`` / ``rejected`` are the assistant responses as strings;
- ``metadata`` holds every other field of the record, untouched.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rewardkit.errors import DataError

logger = logging.getLogger(__name__)

Message = dict[str, str]
Prompt = str | list[Message]

_HH_HUMAN = "\n\nHuman:"
_HH_ASSISTANT = "\n\nAssistant:"
_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv")


@dataclass(frozen=True)
class PreferencePair:
    """One preference: ``chosen`` is preferred over ``rejected`` as an answer to ``prompt``."""

    prompt: Prompt
    chosen: str
    rejected: str
    metadata: dict[str, Any] = field(default_factory=dict)


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
            out.append(p.metadata[field_name])
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


# ----------------------------------------------------------------------------- record normalisation


def _check_messages(value: Any, where: str, name: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field {name!r}: expected a non-empty list of messages")
    for j, m in enumerate(value):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise DataError(f"{where}: field {name!r}: message {j} needs string 'role' and 'content'")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _response_text(value: Any, where: str, name: str) -> str:
    """A response given as a string or as assistant message(s)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    msgs = _check_messages(value, where, name)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise DataError(
            f"{where}: field {name!r}: expected one assistant message, got roles {[m['role'] for m in msgs]}"
        )
    return msgs[0]["content"]


def _parse_hh(transcript: str, where: str, name: str) -> tuple[list[Message], str]:
    """'\\n\\nHuman: a\\n\\nAssistant: b ...' -> (messages before the last assistant turn, last answer)."""
    turns: list[Message] = []
    rest = transcript
    if not rest.startswith(_HH_HUMAN):
        raise DataError(f"{where}: field {name!r}: HH transcript must start with '\\n\\nHuman:'")
    while rest:
        if rest.startswith(_HH_HUMAN):
            role, rest = "user", rest[len(_HH_HUMAN) :]
        elif rest.startswith(_HH_ASSISTANT):
            role, rest = "assistant", rest[len(_HH_ASSISTANT) :]
        else:  # pragma: no cover - guarded by the split below
            raise DataError(f"{where}: field {name!r}: malformed HH transcript")
        cut = [i for i in (rest.find(_HH_HUMAN), rest.find(_HH_ASSISTANT)) if i >= 0]
        end = min(cut) if cut else len(rest)
        turns.append({"role": role, "content": rest[:end].strip()})
        rest = rest[end:]
    if turns[-1]["role"] != "assistant":
        raise DataError(f"{where}: field {name!r}: HH transcript does not end with an Assistant turn")
    return turns[:-1], turns[-1]["content"]


def _split_implicit_messages(
    chosen: list[Message], rejected: list[Message], where: str
) -> tuple[list[Message], str, str]:
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        raise DataError(f"{where}: implicit-prompt record: 'chosen' and 'rejected' share no leading messages")
    return (
        chosen[:n],
        _response_text(chosen[n:], where, "chosen"),
        _response_text(rejected[n:], where, "rejected"),
    )


def _split_implicit_text(chosen: str, rejected: str, where: str) -> tuple[str, str, str]:
    """TRL's ``extract_prompt``: the prompt is the common prefix, except that a space just before the
    first difference goes to the responses (``'The sky is'`` + ``' blue.'``)."""
    n = len(os.path.commonprefix([chosen, rejected]))
    if n == 0 or n == len(chosen) or n == len(rejected):
        raise DataError(
            f"{where}: implicit-prompt record: 'chosen' and 'rejected' need a shared, proper prefix"
        )
    if chosen[n - 1] == " ":
        n -= 1
    if n == 0:
        raise DataError(f"{where}: implicit-prompt record: the shared prefix is only a space")
    return chosen[:n], chosen[n:], rejected[n:]


def normalize_record(
    record: dict[str, Any],
    where: str,
    columns: dict[str, str] | None = None,
    has_prompt: bool | None = None,
) -> PreferencePair:
    """One raw record (any supported format) -> PreferencePair. ``where`` names it in errors.

    ``has_prompt``: whether records of this source carry a prompt field (the format, set by the first
    record). Only records of a source without prompts are split into prompt and responses (implicit
    prompt); a null prompt, or a missing one where the source has prompts, is an error.
    """
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    cols = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", **(columns or {})}
    for key in ("chosen", "rejected"):
        if cols[key] not in record or record[cols[key]] is None:
            raise DataError(f"{where}: missing field {cols[key]!r}")
    raw_c, raw_r = record[cols["chosen"]], record[cols["rejected"]]
    meta = {k: v for k, v in record.items() if k not in (cols["prompt"], cols["chosen"], cols["rejected"])}
    if has_prompt is None:
        has_prompt = cols["prompt"] in record
    if cols["prompt"] in record and record[cols["prompt"]] is None:
        raise DataError(f"{where}: field {cols['prompt']!r} is null")
    if has_prompt and cols["prompt"] not in record:
        raise DataError(f"{where}: missing field {cols['prompt']!r} (the other records have one)")
    if not has_prompt and cols["prompt"] in record:
        raise DataError(
            f"{where}: field {cols['prompt']!r} present, but the first record had none (implicit prompts); "
            "a source must use one format"
        )
    raw_p = record.get(cols["prompt"])

    if raw_p is not None:  # explicit prompt (string or conversational)
        if isinstance(raw_p, str):
            prompt: Prompt = raw_p
        else:
            prompt = _check_messages(raw_p, where, cols["prompt"])
        return PreferencePair(
            prompt,
            _response_text(raw_c, where, cols["chosen"]),
            _response_text(raw_r, where, cols["rejected"]),
            meta,
        )

    if isinstance(raw_c, list) and isinstance(raw_r, list):  # implicit prompt, conversational
        c = _check_messages(raw_c, where, cols["chosen"])
        r = _check_messages(raw_r, where, cols["rejected"])
        prompt, chosen, rejected = _split_implicit_messages(c, r, where)
        return PreferencePair(prompt, chosen, rejected, meta)

    if isinstance(raw_c, str) and isinstance(raw_r, str):
        if raw_c.startswith(_HH_HUMAN) and _HH_ASSISTANT in raw_c:  # HH-RLHF transcripts
            p_c, chosen = _parse_hh(raw_c, where, cols["chosen"])
            p_r, rejected = _parse_hh(raw_r, where, cols["rejected"])
            if p_c != p_r:
                raise DataError(
                    f"{where}: HH record: 'chosen' and 'rejected' transcripts differ before the last answer"
                )
            return PreferencePair(p_c, chosen, rejected, meta)
        prompt, chosen, rejected = _split_implicit_text(raw_c, raw_r, where)
        return PreferencePair(prompt, chosen, rejected, meta)

    raise DataError(
        f"{where}: fields {cols['chosen']!r}/{cols['rejected']!r}: expected strings or message lists, "
        f"got {type(raw_c).__name__}/{type(raw_r).__name__}"
    )


# ----------------------------------------------------------------------------- sources


_GZIP_ERRORS: tuple[type[BaseException], ...] = (EOFError, gzip.BadGzipFile, zlib.error)


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _gzip_error(path: Path, e: BaseException, where: str = "") -> DataError:
    what = "truncated" if isinstance(e, EOFError) else "corrupt"
    return DataError(f"{path}{where}: {what} gzip stream ({type(e).__name__}: {e})".replace(": )", ")"))


def _iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, record or DataError) per non-empty line; each line is decoded on its own, so one line
    of bad bytes is one bad record (skippable), not the end of the file. A UTF-8 BOM is accepted."""
    lineno = 0
    try:
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                where = f"{path}:{lineno}"
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    yield (
                        where,
                        DataError(f"{where}: not UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})"),
                    )
                    continue
                if not line.strip():
                    continue
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as e:
                    yield where, DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})")
    except _GZIP_ERRORS as e:
        raise _gzip_error(path, e, f" after line {lineno}") from None


def _read_text(path: Path) -> str:
    try:
        with _open_binary(path) as f:
            data = f.read()
    except _GZIP_ERRORS as e:
        raise _gzip_error(path, e) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte {e.start})") from None


def _iter_json(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if isinstance(data, dict):  # {"data": [...]} / {"train": [...]} containers
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(
                f"{path}: expected a JSON list of records (or an object holding exactly one list)"
            )
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records")
    for i, rec in enumerate(data):
        yield f"{path}: record {i}", rec


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _iter_csv(path: Path) -> Iterator[tuple[str, Any]]:
    import io

    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    extra: list[str] = []
    try:
        for row in reader:
            # line of the record's end; CSV cells holding message lists are JSON strings
            where = f"{path}:{reader.line_num}"
            if None in row:  # more cells than header columns: kept without them, and counted
                extra.append(where)
                row.pop(None)
            yield where, {k: _maybe_json(v) for k, v in row.items()}
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    if extra:
        logger.warning(
            "%s: %d row(s) with more cells than the header's columns (extra cells ignored; first: %s)",
            path,
            len(extra),
            extra[0],
        )


def _iter_parquet(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    return _iter_rows(rows, str(path))


def _iter_rows(rows: Iterable[dict[str, Any]], name: str) -> Iterator[tuple[str, Any]]:
    for i, rec in enumerate(rows):
        yield f"{name}: row {i}", rec


def _iter_source(source: Any, split: str) -> tuple[str, Iterator[tuple[str, Any]]]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        datasets = None
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        if split not in source:
            raise DataError(f"dataset has no split {split!r}; splits: {list(source)}")
        source = source[split]
    if datasets is not None and isinstance(source, datasets.Dataset):
        return "<datasets.Dataset>", _iter_rows(source, "<datasets.Dataset>")
    if isinstance(source, (list, tuple)):
        return "<list>", _iter_rows(source, "<list>")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = path.name.lower()
        if path.is_file():
            if name.endswith((".jsonl", ".jsonl.gz")):
                return str(path), _iter_jsonl(path)
            if name.endswith((".json", ".json.gz")):
                return str(path), _iter_json(path)
            if name.endswith(".csv"):
                return str(path), _iter_csv(path)
            if name.endswith(".parquet"):
                return str(path), _iter_parquet(path)
            raise DataError(f"{path}: unsupported file type; expected one of {', '.join(_FILE_SUFFIXES)}")
        if path.exists():
            raise DataError(f"{path}: is a directory, expected a preference file")
        text = str(source)
        if text.count("/") == 1 and not text.startswith((".", "/")) and not name.endswith(_FILE_SUFFIXES):
            return text, _iter_rows(_load_hub(text, split), text)
        raise DataError(f"{path}: file not found")
    raise DataError(f"unsupported preference source of type {type(source).__name__}")


def _load_hub(name: str, split: str):
    import datasets

    try:
        return datasets.load_dataset(name, split=split)
    except Exception as e:  # network / name errors: one line, with the cause
        raise DataError(
            f"{name}: could not load hub dataset split {split!r} ({type(e).__name__}: {e})"
        ) from None


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
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    name, records = _iter_source(source, split)
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
            if has_prompt is None and isinstance(rec, dict):
                has_prompt = prompt_col in rec
            pair = normalize_record(rec, where, columns, has_prompt)
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
            "%s: skipped %d malformed record(s) of %d: %s",
            name,
            len(skipped),
            len(skipped) + len(pairs),
            "; ".join(s.reason for s in skipped[:3])
            + (f"; +{len(skipped) - 3} more" if len(skipped) > 3 else ""),
        )
    for kind, where in issues.items():  # kept (training on them can be legitimate), never hidden
        logger.warning("%s: %d pair(s) with %s (first: %s)", name, len(where), kind, where[0])
    if not pairs:
        raise DataError(
            f"{name}: no valid preference pairs" + (f" ({len(skipped)} skipped)" if skipped else "")
        )
    return PreferenceDataset(pairs, skipped, source=name, indices=indices, issues=issues)


KNOWN_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function", "ipython"})


def degenerate(pair: PreferencePair) -> list[str]:
    """Kinds of degeneracy of one pair: data that loads but likely means something else than intended."""
    kinds = []
    if pair.chosen == pair.rejected:
        kinds.append("chosen == rejected")
    if not pair.chosen.strip() or not pair.rejected.strip():
        kinds.append("an empty or whitespace-only response")
    if isinstance(pair.prompt, str):
        if not pair.prompt.strip():
            kinds.append("an empty or whitespace-only prompt")
    else:
        if not any(m["content"].strip() for m in pair.prompt):
            kinds.append("an empty or whitespace-only prompt")
        roles = {m["role"] for m in pair.prompt} - KNOWN_ROLES
        if roles:
            kinds.append(f"unknown role(s) {sorted(roles)}")
        if pair.prompt[-1]["role"] == "assistant":
            kinds.append("a prompt ending with an assistant turn")
    return kinds


def as_pairs(data: Any) -> PreferenceDataset:
    """Accept a PreferenceDataset, a list of PreferencePair, or anything ``load_preferences`` takes."""
    if isinstance(data, PreferenceDataset):
        return data
    if isinstance(data, (list, tuple)) and data and all(isinstance(p, PreferencePair) for p in data):
        return PreferenceDataset(data)
    return load_preferences(data)
