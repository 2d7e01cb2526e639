"""Data files are read under bounds (rewardkit.readers): one record (a JSONL line, a JSON list item) at
most MAX_RECORD_BYTES once decompressed, JSON lists streamed item by item, at most MAX_EMPTY_LINES empty
lines; a gzip bomb or a sparse file fails in one line ``file:line: record longer than ...`` within
bounded memory and time."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rewardkit.readers as readers
from rewardkit.data import load_preferences
from rewardkit.errors import DataError

GOOD = {"prompt": "q", "chosen": " a", "rejected": " b"}
LIMIT = readers.MAX_RECORD_BYTES


def _gzip_bomb(path: Path, size: int, line: bytes = b"a") -> None:
    """``size`` bytes of ``line`` repeated (no newline unless the line has one), compressed."""
    block = line * (2**20 // len(line))
    with gzip.open(path, "wb", compresslevel=9) as f:
        for _ in range(size // len(block)):
            f.write(block)


def _files(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the message it gives)"""
    out = {}
    f = d / "long_line.jsonl.gz"  # 64 MB of one line in ~64 KB
    _gzip_bomb(f, 4 * LIMIT)
    out["gzip one long line"] = (f, f"{f}:1: record longer than {LIMIT} bytes (decompressed)")
    f = d / "sparse.jsonl"  # a 2 GB hole: reads as zeros without newlines
    with open(f, "wb") as h:
        h.write((json.dumps(GOOD) + "\n").encode())
        h.truncate(2 * 2**30)
    out["sparse file"] = (f, f"{f}:2: record longer than {LIMIT} bytes")
    f = d / "newlines.jsonl.gz"  # two million empty lines in ~2 KB
    _gzip_bomb(f, 2 * readers.MAX_EMPTY_LINES + 2**20, b"\n")
    out["gzip of empty lines"] = (
        f,
        f"{f}:{readers.MAX_EMPTY_LINES + 1}: more than {readers.MAX_EMPTY_LINES} empty lines",
    )
    f = d / "list.json.gz"  # a JSON list whose second item is 64 MB
    with gzip.open(f, "wb") as h:
        h.write(b"[\n" + json.dumps(GOOD).encode() + b',\n{"prompt": "')
        for _ in range(4 * LIMIT // 2**20):
            h.write(b"x" * 2**20)
        h.write(b'"}]')
    out["json list item"] = (f, f"{f}:3: record longer than {LIMIT} bytes")
    return out


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    return _files(tmp_path_factory.mktemp("bombs"))


def _limited():
    resource.setrlimit(resource.RLIMIT_DATA, (2 * 2**30, 2 * 2**30))
    resource.setrlimit(resource.RLIMIT_CPU, (30, 30))


@pytest.mark.parametrize(
    "name", ["gzip one long line", "sparse file", "gzip of empty lines", "json list item"]
)
def test_bombs_fail_in_one_line_within_bounds(bombs, tmp_path, name):
    """The real CLI in a subprocess capped at 2 GB of data and 30 s of CPU: exit 2, one line naming
    file:line, wall time under 30 s, and the input unchanged."""
    path, message = bombs[name]
    before = os.stat(path).st_mtime_ns, os.path.getsize(path)
    exe = Path(sys.executable).parent / "rewardkit"
    t = time.perf_counter()
    r = subprocess.run(
        [str(exe), "score", "--rm", str(tmp_path / "rm"), "--data", str(path), "--out", str(tmp_path / "o")],
        preexec_fn=_limited,
        capture_output=True,
        text=True,
        timeout=60,
    )
    wall = time.perf_counter() - t
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip() == f"error: {message}" or r.stderr.startswith(f"error: {message}"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert wall < 30
    assert (os.stat(path).st_mtime_ns, os.path.getsize(path)) == before
    assert not (tmp_path / "o").exists()


def test_peak_memory_of_a_bomb_is_bounded(bombs):
    """In this process: reading the 64 MB line keeps at most one bounded record (16 MiB) in memory."""
    path, message = bombs["gzip one long line"]
    code = (
        "import resource, sys\n"
        "from rewardkit.data import load_preferences\n"
        "try:\n    load_preferences(sys.argv[1])\nexcept Exception as e:\n    print(e)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(path)], preexec_fn=_limited, capture_output=True, text=True
    )
    out = r.stdout.splitlines()
    assert out[0] == message
    assert int(out[1]) / 1024 < 2048


def test_skip_lists_the_long_record_and_keeps_the_rest(tmp_path):
    f = tmp_path / "mixed.jsonl"
    with open(f, "wb") as h:
        h.write((json.dumps(GOOD) + "\n").encode())
        h.write(b'{"prompt": "' + b"x" * (LIMIT + 10) + b'"}\n')
        h.write((json.dumps({**GOOD, "prompt": "q2"}) + "\n").encode())
    ds = load_preferences(f, on_error="skip")
    assert [p.prompt for p in ds] == ["q", "q2"] and ds.indices == [0, 2]
    assert [s.location for s in ds.skipped] == [f"{f}:2"]
    assert "record longer than" in ds.skipped[0].reason
    with pytest.raises(DataError, match=rf"^{f}:2: record longer than {LIMIT} bytes"):
        load_preferences(f)


@pytest.mark.parametrize(
    "text,message",
    [
        ('[{"prompt": "q", "chosen": " a", "rejected": " b"},]', ":1: invalid JSON"),
        ('[{"prompt": "q", "chosen": " a", "rejected": " b"}\n {"x": 1}]', ":2: invalid JSON (expected ','"),
        ('[\n{"prompt": "q", "chosen": " a", "rejected": " b"}', ":2: invalid JSON (the list is not closed)"),
        ('[\n\n{"prompt": ', ":3: invalid JSON"),
    ],
)
def test_streamed_json_lists_name_the_line(tmp_path, text, message):
    f = tmp_path / "bad.json"
    f.write_text(text)
    before = hashlib.sha256(f.read_bytes()).hexdigest()
    with pytest.raises(DataError) as e:
        load_preferences(f)
    assert str(e.value).startswith(f"{f}{message}")
    assert hashlib.sha256(f.read_bytes()).hexdigest() == before


def test_streamed_json_equals_a_whole_read(tmp_path, monkeypatch):
    """Items cut across the reader's chunks, multi-byte characters at chunk ends, a BOM, a container
    object, gzip: the same records as json.loads of the whole file."""
    monkeypatch.setattr(readers, "_CHUNK", 7)  # every item spans several chunks
    recs = [{"prompt": f"p{i}\n\u00e9\u4e2d", "chosen": " \u00e9" * i, "rejected": " b"} for i in range(30)]
    files = {
        "a.json": ("\ufeff" + json.dumps(recs, indent=1)).encode(),
        "b.json.gz": gzip.compress(json.dumps(recs, ensure_ascii=False).encode()),
        "c.json": json.dumps({"data": recs}).encode(),
    }
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
        ds = load_preferences(tmp_path / name)
        assert [(p.prompt, p.chosen) for p in ds] == [(r["prompt"], r["chosen"]) for r in recs], name


def test_a_json_object_container_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "MAX_JSON_OBJECT_BYTES", 1000)
    f = tmp_path / "big.json"
    f.write_text(json.dumps({"data": [GOOD] * 100}))
    with pytest.raises(DataError, match="a JSON object larger than 1000 bytes"):
        load_preferences(f)
