"""Preference sources as (location, record) streams: JSONL (gzip too), JSON, CSV, Parquet, a
``datasets.Dataset``, a hub name or a list of dicts. Each record comes with the location errors name
(``file:line``, ``file: record i``); a record that cannot be read is yielded as its
:class:`~rewardkit.errors.DataError`, so ``on_error="skip"`` can count it and go on.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rewardkit.errors import DataError

logger = logging.getLogger(__name__)

FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv")

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
                except RecursionError:
                    yield where, DataError(f"{where}: JSON nested too deeply to be a preference record")
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
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to hold preference records") from None
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


def _cell(value: Any) -> Any:
    """A CSV cell: text, except a JSON list of chat messages (the CSV form of a conversation); anything
    else that happens to parse as JSON (``[1, 2, 3]``, one message object) stays the text it is."""
    if isinstance(value, str) and value[:1] == "[":
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            return value
        if parsed and isinstance(parsed, list) and all(isinstance(m, dict) and "role" in m for m in parsed):
            return parsed
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
            yield where, {k: _cell(v) for k, v in row.items()}
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


def iter_source(source: Any, split: str) -> tuple[str, Iterator[tuple[str, Any]]]:
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
            raise DataError(f"{path}: unsupported file type; expected one of {', '.join(FILE_SUFFIXES)}")
        if path.exists():
            raise DataError(f"{path}: is a directory, expected a preference file")
        text = str(source)
        if text.count("/") == 1 and not text.startswith((".", "/")) and not name.endswith(FILE_SUFFIXES):
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


