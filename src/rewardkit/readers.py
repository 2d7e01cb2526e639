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


#: bytes one record (a JSONL line, a JSON list item, a CSV row) may take once decompressed
MAX_RECORD_BYTES = 16 * 2**20
#: empty lines a JSONL file may hold (a gzip of a billion newlines is a few MB)
MAX_EMPTY_LINES = 1_000_000
#: bytes of a JSON file that is not a top-level list (read whole; a list is streamed item by item)
MAX_JSON_OBJECT_BYTES = 64 * 2**20
_CHUNK = 2**20


def _too_long(where: str) -> DataError:
    return DataError(f"{where}: record longer than {MAX_RECORD_BYTES} bytes (decompressed)")


def _lines(f, path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per line, each read with a bound: a line past MAX_RECORD_BYTES comes as None
    (the rest of it is read in chunks and dropped, never held); more than MAX_EMPTY_LINES empty lines
    end the file with an error."""
    lineno = empty = 0
    while True:
        raw = f.readline(MAX_RECORD_BYTES + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
            yield lineno, None  # the caller stops here unless it skips bad records
            while raw and not raw.endswith(b"\n"):
                raw = f.readline(_CHUNK)
            continue
        if not raw.strip():
            empty += 1
            if empty > MAX_EMPTY_LINES:
                raise DataError(
                    f"{path}:{lineno}: more than {MAX_EMPTY_LINES} empty lines (not a preference file?)"
                )
            continue
        yield lineno, raw


def _iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, record or DataError) per non-empty line; each line is decoded on its own, so one line
    of bad bytes is one bad record (skippable), not the end of the file. A UTF-8 BOM is accepted."""
    lineno = 0
    try:
        with _open_binary(path) as f:
            for lineno, raw in _lines(f, path):
                where = f"{path}:{lineno}"
                if raw is None:
                    yield where, _too_long(where)
                    continue
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    yield (
                        where,
                        DataError(f"{where}: not UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r})"),
                    )
                    continue
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as e:
                    yield where, DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno})")
                except RecursionError:
                    yield where, DataError(f"{where}: JSON nested too deeply to be a preference record")
    except _GZIP_ERRORS as e:
        raise _gzip_error(path, e, f" after line {lineno}") from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """(``file:line``, record or :class:`DataError`) per non-empty line of any JSONL file (gzip by its
    suffix), under the same bounds as preference files."""
    return _iter_jsonl(Path(path))


def _read_text(path: Path, limit: int) -> str:
    try:
        with _open_binary(path) as f:
            data = f.read(limit + 1)
    except _GZIP_ERRORS as e:
        raise _gzip_error(path, e) from None
    if len(data) > limit:
        raise DataError(
            f"{path}: a JSON object larger than {limit} bytes (decompressed): give a top-level list of "
            "records (streamed) or JSONL"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte {e.start})") from None


def _first_char(f) -> bytes:
    """The first non-whitespace byte of the stream (a BOM skipped), the stream positioned after it."""
    head = f.read(3)
    if head != b"\xef\xbb\xbf":
        f.seek(0)
    while True:
        c = f.read(1)
        if not c or not c.isspace():
            return c


def _iter_json_list(f, path: Path) -> Iterator[tuple[str, Any]]:
    """Items of a top-level JSON list, decoded one at a time from a bounded buffer (the stream is after
    its '['); an item longer than MAX_RECORD_BYTES is an error naming its line."""
    decoder = json.JSONDecoder()
    buf, pos, line, eof, i = "", 0, 1, False, 0
    pending = b""

    def more() -> bool:
        nonlocal buf, pending, eof, pos
        chunk = f.read(max(_CHUNK, len(buf) - pos))
        if not chunk:
            eof = True
            return False
        data = pending + chunk
        try:
            text = data.decode("utf-8")
            pending = b""
        except UnicodeDecodeError as e:
            if e.start < len(data) - 3:  # not just a character cut at the chunk's end
                raise DataError(f"{path}:{line + buf[pos:].count(chr(10))}: not UTF-8") from None
            text, pending = data[: e.start].decode("utf-8"), data[e.start :]
        buf = buf[pos:] + text
        pos = 0
        return True

    more()
    expect_item = True
    while True:
        while True:  # skip whitespace and one separator
            while pos < len(buf) and buf[pos] in " \t\r\n":
                line += buf[pos] == "\n"
                pos += 1
            if pos < len(buf) or eof or not more():
                break
        if pos >= len(buf):
            raise DataError(f"{path}:{line}: invalid JSON (the list is not closed)")
        if buf[pos] == "]" and (expect_item is False or i == 0):
            return
        if buf[pos] == "," and not expect_item:
            pos += 1
            expect_item = True
            continue
        if not expect_item:
            raise DataError(f"{path}:{line}: invalid JSON (expected ',' or ']' after record {i - 1})")
        while True:
            try:
                rec, end = decoder.raw_decode(buf, pos)
                if end < len(buf) or eof:  # a value cut at the buffer's end is not taken
                    break
            except json.JSONDecodeError as e:
                if eof:
                    raise DataError(
                        f"{path}:{line + buf[pos : e.pos].count(chr(10))}: invalid JSON ({e.msg})"
                    ) from None
            except RecursionError:
                raise DataError(f"{path}:{line}: JSON nested too deeply to hold preference records") from None
            if len(buf) - pos > MAX_RECORD_BYTES:
                raise _too_long(f"{path}:{line}")
            if not more():
                continue
        if end - pos > MAX_RECORD_BYTES:
            raise _too_long(f"{path}:{line}")
        yield f"{path}: record {i}", rec
        line += buf.count("\n", pos, end)
        pos, i, expect_item = end, i + 1, False


def _iter_json(path: Path) -> Iterator[tuple[str, Any]]:
    """A top-level list is streamed item by item; an object holding exactly one list (``{"data":
    [...]}``) is read whole, up to MAX_JSON_OBJECT_BYTES."""
    try:
        with _open_binary(path) as f:
            first = _first_char(f)
            if first == b"[":
                yield from _iter_json_list(f, path)
                return
    except _GZIP_ERRORS as e:
        raise _gzip_error(path, e) from None
    try:
        data = json.loads(_read_text(path, MAX_JSON_OBJECT_BYTES))
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
    """Rows streamed (csv bounds each field at csv.field_size_limit, 128 KiB by default)."""
    import io

    with _open_binary(path) as raw:
        yield from _csv_rows(path, io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))


def _csv_rows(path: Path, text) -> Iterator[tuple[str, Any]]:
    reader = csv.DictReader(text)
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
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{reader.line_num + 1}: not UTF-8 (byte {e.start} of a block)") from None
    except _GZIP_ERRORS as e:
        raise _gzip_error(path, e) from None
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
        batches = pq.ParquetFile(path).iter_batches(batch_size=64)
        i = 0
        for batch in batches:  # a batch at a time: a record's size is bounded before it is a dict
            if batch.nbytes > 64 * MAX_RECORD_BYTES or any(
                batch.slice(j, 1).nbytes > MAX_RECORD_BYTES for j in range(batch.num_rows)
            ):
                raise _too_long(f"{path}: rows {i}-{i + batch.num_rows - 1}")
            for rec in batch.to_pylist():
                yield f"{path}: row {i}", rec
                i += 1
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None


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
        if path.is_dir():
            raise DataError(f"{path}: is a directory, expected a preference file")
        if path.exists():  # a FIFO, a socket, a device
            raise DataError(f"{path}: not a regular file, expected a preference file")
        text = str(source)
        if text.count("/") == 1 and not text.startswith((".", "/")) and not name.endswith(FILE_SUFFIXES):
            rows = _load_hub(text, split)
            commit = hub_commit(rows)
            label = f"{text.partition('@')[0]}@{commit}" if commit else text
            return label, _iter_rows(rows, label)
        raise DataError(f"{path}: file not found")
    raise DataError(f"unsupported preference source of type {type(source).__name__}")


def hub_commit(dataset: Any) -> str | None:
    """The commit a hub split was read at, so a report names exactly what it scored: ``datasets`` keeps a
    hub dataset's files under a folder named by the commit it resolved (``.../<40 hex>/<split>.arrow``).
    None when the rows are not such a dataset (a list, an in-memory dataset) or the layout differs."""
    for f in getattr(dataset, "cache_files", None) or ():
        folder = Path(f.get("filename", "")).parent.name
        if len(folder) == 40 and all(c in "0123456789abcdef" for c in folder):
            return folder
    return None


def _load_hub(name: str, split: str):
    """A hub dataset's split; ``name`` may pin a revision (a commit, tag or branch): ``org/name@REV``."""
    import datasets

    repo, _, revision = name.partition("@")
    try:
        return datasets.load_dataset(repo, split=split, revision=revision or None)
    except Exception as e:  # network / name errors: one line, with the cause
        raise DataError(
            f"{name}: could not load hub dataset split {split!r} ({type(e).__name__}: {e})"
        ) from None
