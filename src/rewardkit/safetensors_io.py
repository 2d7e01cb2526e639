"""Lazy safetensors reading (single files or sharded with an index) and a streaming writer whose header
is computed up front, so tensors are written one at a time and never held together in memory.

Plain numpy, no torch: ``rewardkit merge`` of full checkpoints never imports torch (one second of
start-up on a small machine, as long as the merge itself). Tensors are numpy arrays of their storage
type, dtypes the safetensors names ("F32", "BF16", ...); a bfloat16 tensor is its raw bits as uint16
(:func:`to_torch` views it as ``torch.bfloat16``).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.errors import ModelError

#: safetensors dtype name -> numpy storage type (bfloat16: its bits, as uint16)
STORAGE = {
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(np.uint16),
    "F64": np.dtype(np.float64),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
FLOATS = ("F32", "F16", "BF16", "F64")
ALIGN = 64  # bytes: the kernel copies from the page cache into a cache-line aligned buffer ~5x faster


def aligned_empty(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 buffer whose data starts on a cache line."""
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + nbytes]


def to_torch(array: np.ndarray, dtype: str) -> Any:
    """A numpy tensor read by :class:`CheckpointReader` as a torch tensor (shared memory)."""
    import torch

    t = torch.from_numpy(array)
    return t.view(torch.bfloat16) if dtype == "BF16" else t


_WIDTH = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
READAHEAD_BYTES = 64 * 2**20  # per input file, requested ahead of the reads (0: leave it to the kernel)
_HAS_FADVISE = hasattr(os, "posix_fadvise")  # Linux; not macOS / Windows


MAX_HEADER_BYTES = 100 * 2**20  # the safetensors format's own limit on the JSON header


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def read_header(file: str | os.PathLike) -> tuple[int, dict]:
    """(header length, header) of a safetensors file, validated: a sane length, JSON, known dtypes, and
    every tensor's byte range inside the file and of the size its shape and dtype need. A truncated or
    corrupt file raises :class:`ModelError` naming the file and what is wrong."""
    file = Path(file)
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelError(f"{file}: not a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise ModelError(f"{file}: corrupt safetensors header (length {n} for a file of {size} bytes)")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{file}: corrupt safetensors header (not JSON: {e})") from None
    if not isinstance(header, dict):
        raise ModelError(f"{file}: corrupt safetensors header (not a JSON object)")
    ranges = []
    for k, v in header.items():
        if k == "__metadata__":
            if not isinstance(v, dict):
                raise ModelError(f"{file}: corrupt safetensors header (__metadata__ is not an object)")
            continue
        ok = isinstance(v, dict) and isinstance(v.get("shape"), list) and isinstance(v.get("data_offsets"), list)
        ok = ok and len(v["data_offsets"]) == 2 and all(_count(x) for x in [*v["shape"], *v["data_offsets"]])
        if not ok:
            raise ModelError(
                f"{file}: corrupt safetensors header entry for tensor {k!r} (shape and data_offsets must be "
                "non-negative integers)"
            )
        dtype, shape, (lo, hi) = v.get("dtype"), v["shape"], v["data_offsets"]
        width = _WIDTH.get(dtype) if isinstance(dtype, str) else None
        if width is None:
            raise ModelError(f"{file}: tensor {k!r} has an unknown dtype {dtype!r}")
        numel = 1
        for d in shape:
            numel *= d
        if not lo <= hi or hi - lo != numel * width:
            raise ModelError(
                f"{file}: tensor {k!r}: byte range {lo}..{hi} does not fit shape {shape} {dtype}"
            )
        if 8 + n + hi > size:
            raise ModelError(f"{file}: truncated: tensor {k!r} ends at byte {8 + n + hi} of {size}")
        ranges.append((lo, hi, k))
    # the data buffer is indexed entirely, once: no two tensors share bytes, no gap, nothing after
    at, prev = 0, None
    for lo, hi, k in sorted(ranges):
        if lo < at:
            raise ModelError(f"{file}: tensors {prev!r} and {k!r} overlap (bytes {lo}..{at})")
        if lo > at:
            raise ModelError(f"{file}: {lo - at} unindexed bytes before tensor {k!r} (a gap in the data)")
        at, prev = hi, k
    if 8 + n + at != size:
        raise ModelError(f"{file}: {size - 8 - n - at} bytes after the last tensor (trailing data)")
    return n, header


def shard_files(index: Path) -> list[str]:
    """The shard file names a ``*.safetensors.index.json`` lists, checked: plain names of files beside
    the index (a name such as ``../other/model.safetensors`` would read weights from another folder)."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ModelError(f"{index}: invalid shard index ({type(e).__name__}: {e})") from None
    for name in names:
        if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
            raise ModelError(f"{index}: shard {name!r} is not a file name beside the index")
    return names


class CheckpointReader:
    """Tensor names, shapes and dtypes of a checkpoint folder from the safetensors headers; each tensor
    is read on demand with a plain file read (no mmap), so only the tensors in hand count towards RSS."""

    def __init__(self, folder: str | os.PathLike, stem: str = "model"):
        self._fds: dict[Path, int] = {}  # kept open for positioned reads; closed by close()
        self._advised: dict[Path, int] = {}  # file offset up to which readahead was requested
        self.folder = Path(folder)
        index = self.folder / f"{stem}.safetensors.index.json"
        single = self.folder / f"{stem}.safetensors"
        if index.is_file():
            self.files = [self.folder / f for f in shard_files(index)]
        elif single.is_file():
            self.files = [single]
        else:
            raise ModelError(f"{self.folder}: no {stem}.safetensors or {stem}.safetensors.index.json")
        self.entries: dict[str, tuple[Path, int, tuple[int, ...], str, int]] = {}
        for f in self.files:
            if not f.is_file():
                raise ModelError(f"{f}: listed in the shard index but missing")
            n, header = read_header(f)
            for k, v in header.items():
                if k in self.entries and k != "__metadata__":
                    raise ModelError(f"{f}: tensor {k!r} is also in {self.entries[k][0].name}")
                if k != "__metadata__":
                    lo, hi = v["data_offsets"]
                    self.entries[k] = (f, 8 + n + lo, tuple(v["shape"]), v["dtype"], hi - lo)

    def keys(self) -> list[str]:
        return list(self.entries)

    def meta(self, key: str) -> tuple[tuple[int, ...], str]:
        _, _, shape, dtype, _ = self.entries[key]
        return shape, dtype

    def get(self, key: str) -> np.ndarray:
        shape = self.entries[key][2]
        return self.get_rows(key, 0, shape[0] if shape else 0)

    def get_tensor(self, key: str) -> Any:
        """:meth:`get` as a torch tensor of the stored dtype."""
        return to_torch(self.get(key), self.entries[key][3])

    def get_rows(self, key: str, lo: int, hi: int, scratch: np.ndarray | None = None) -> np.ndarray:
        """Rows [lo, hi) along the first dimension (a contiguous byte range of the file), as a numpy array
        of the storage type (see :data:`STORAGE`); a scalar is read whole whatever ``lo`` and ``hi`` are.

        With ``scratch`` (a uint8 array at least that large, reused between calls to avoid page faults)
        the result is a view of it, valid until the next call with the same buffer.
        """
        f, offset, shape, dtype, size = self.entries[key]
        if dtype not in STORAGE:
            raise ModelError(f"{f}: tensor {key!r} has unsupported dtype {dtype}")
        row = size // shape[0] if shape and shape[0] else 0
        nbytes, start = (row * (hi - lo), offset + row * lo) if shape else (size, offset)
        out_shape = (hi - lo, *shape[1:]) if shape else ()
        buf = scratch[:nbytes] if scratch is not None and scratch.size >= nbytes else aligned_empty(nbytes)
        fd = self._fds.get(f)
        if fd is None:
            fd = self._fds[f] = os.open(f, os.O_RDONLY)
        end = start + nbytes
        if READAHEAD_BYTES and _HAS_FADVISE and end + READAHEAD_BYTES // 2 > self._advised.get(f, 0):
            # ask the kernel to fetch the next window in the background, so the disk works while this
            # block is being averaged (members are read in turn, which defeats its own readahead)
            os.posix_fadvise(fd, end, READAHEAD_BYTES, os.POSIX_FADV_WILLNEED)
            self._advised[f] = end + READAHEAD_BYTES
        view, done = memoryview(buf), 0
        while done < nbytes:  # positioned reads (no seek); Linux caps one read at ~2 GiB
            got = os.preadv(fd, [view[done:]], start + done)
            if got == 0:
                raise ModelError(f"{f}: tensor {key!r} is truncated (read {done} of {nbytes} bytes)")
            done += got
        return buf.view(STORAGE[dtype]).reshape(out_shape)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return STORAGE[dtype].itemsize * int(np.prod(shape, dtype=np.int64))


class StreamingShardWriter:
    """Writes tensors (declared up front with shape and dtype) into shards of at most ``shard_bytes``,
    each a valid safetensors file, plus ``model.safetensors.index.json`` when there are several. Dtypes
    are safetensors names; blocks are numpy arrays of the storage type (:data:`STORAGE`)."""

    def __init__(
        self,
        folder: Path,
        specs: list[tuple[str, tuple[int, ...], str]],
        shard_bytes: int,
        metadata: dict[str, str] | None = None,
        stem: str = "model",
    ):
        self.folder, self.metadata, self.stem = folder, metadata or {"format": "pt"}, stem
        shards: list[list[tuple[str, tuple[int, ...], str]]] = [[]]
        size = 0
        for spec in specs:
            n = _nbytes(spec[1], spec[2])
            if shards[-1] and size + n > shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append(spec)
            size += n
        self.shards = shards
        self.names = (
            [f"{stem}.safetensors"]
            if len(shards) == 1
            else [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        )
        self.order = [spec[0] for shard in shards for spec in shard]
        self._expected = {spec[0]: spec for shard in shards for spec in shard}
        self._shard_of = {spec[0]: i for i, shard in enumerate(shards) for spec in shard}
        self._next = 0
        self._file = None
        self._shard = -1
        self._pool = None
        self._pending = None

    def _submit(self, data: np.ndarray) -> None:
        """Write ``data`` in the background (file writes release the GIL, so the next block is computed
        meanwhile); at most one write is in flight, so the caller may reuse a buffer two parts later."""
        self._wait()
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rewardkit-writer")
        self._pending = self._pool.submit(self._file.write, memoryview(data))

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a failed write (disk full...)

    def _open_shard(self, i: int) -> None:
        self._wait()
        if self._file is not None:
            self._file.close()
        header: dict = {"__metadata__": self.metadata}
        offset = 0
        for name, shape, dtype in self.shards[i]:
            n = _nbytes(shape, dtype)
            header[name] = {
                "dtype": dtype,
                "shape": list(shape),
                "data_offsets": [offset, offset + n],
            }
            offset += n
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self._file = open(self.folder / self.names[i], "wb")  # noqa: SIM115 (closed in _open_shard/close)
        self._file.write(struct.pack("<Q", len(blob)) + blob)
        self._shard = i

    def write(self, name: str, tensor: np.ndarray) -> None:
        """Tensors must arrive in ``self.order``."""
        self.write_parts(name, [tensor])

    def write_parts(self, name: str, parts) -> None:
        """Write one tensor as consecutive row blocks (each [rows, *shape[1:]]), in ``self.order``.

        Blocks are written in the background: a block's memory must stay unchanged until the next block
        (of this tensor or a later one) has been handed over, or ``close`` has returned."""
        if self._next >= len(self.order) or self.order[self._next] != name:
            raise RuntimeError(f"tensor {name!r} written out of order")
        _, shape, dtype = self._expected[name]
        shard = self._shard_of[name]
        if shard != self._shard:
            self._open_shard(shard)
        written, numel = 0, int(np.prod(shape, dtype=np.int64))
        for part in parts:
            if part.dtype != STORAGE[dtype] or tuple(part.shape[1:]) != tuple(shape[1:]) and len(shape) > 0:
                raise RuntimeError(
                    f"tensor {name!r}: block {tuple(part.shape)} {part.dtype} does not fit "
                    f"{tuple(shape)} {dtype}"
                )
            if part.size:
                self._submit(np.ascontiguousarray(part).reshape(-1).view(np.uint8))
            written += part.size
        if written != numel:
            raise RuntimeError(f"tensor {name!r}: wrote {written} of {numel} elements")
        self._next += 1

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        if self._file is not None:
            self._file.close()

    def abort(self) -> None:
        """Stop after an error: drop the pending write's outcome, release the thread and the file."""
        try:
            self._wait()
        except Exception:
            pass
        finally:
            self._release()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._release()
        if self._next != len(self.order):
            raise RuntimeError(f"{len(self.order) - self._next} tensors were never written")
        if len(self.shards) > 1:
            weight_map = {spec[0]: self.names[i] for i, s in enumerate(self.shards) for spec in s}
            total = sum(_nbytes(sh, d) for _, sh, d in self._expected.values())
            (self.folder / f"{self.stem}.safetensors.index.json").write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
            )
