"""Lazy safetensors reading (single files or sharded with an index) and a streaming writer whose header
is computed up front, so tensors are written one at a time and never held together in memory."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from rewardkit.errors import ModelError

DTYPE_NAMES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


class CheckpointReader:
    """Tensor names, shapes and dtypes of a checkpoint folder without loading it; tensors on demand."""

    def __init__(self, folder: str | os.PathLike, stem: str = "model"):
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / f"{stem}.safetensors.index.json"
        single = self.folder / f"{stem}.safetensors"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.files = sorted({self.folder / f for f in weight_map.values()})
        elif single.is_file():
            self.files = [single]
        else:
            raise ModelError(f"{self.folder}: no {stem}.safetensors or {stem}.safetensors.index.json")
        self._handles = {f: safe_open(str(f), framework="pt") for f in self.files}
        self.where: dict[str, Path] = {}
        for f, h in self._handles.items():
            for k in h.keys():
                self.where[k] = f

    def keys(self) -> list[str]:
        return list(self.where)

    def meta(self, key: str) -> tuple[tuple[int, ...], str]:
        s = self._handles[self.where[key]].get_slice(key)
        return tuple(s.get_shape()), s.get_dtype()

    def get(self, key: str) -> torch.Tensor:
        return self._handles[self.where[key]].get_tensor(key)

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class StreamingShardWriter:
    """Writes tensors (declared up front with shape and dtype) into shards of at most ``shard_bytes``,
    each a valid safetensors file, plus ``model.safetensors.index.json`` when there are several."""

    def __init__(
        self,
        folder: Path,
        specs: list[tuple[str, tuple[int, ...], torch.dtype]],
        shard_bytes: int,
        metadata: dict[str, str] | None = None,
        stem: str = "model",
    ):
        self.folder, self.metadata, self.stem = folder, metadata or {"format": "pt"}, stem
        shards: list[list[tuple[str, tuple[int, ...], torch.dtype]]] = [[]]
        size = 0
        for spec in specs:
            n = _element_size(spec[2]) * int(torch.Size(spec[1]).numel())
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

    def _open_shard(self, i: int) -> None:
        if self._file is not None:
            self._file.close()
        header: dict = {"__metadata__": self.metadata}
        offset = 0
        for name, shape, dtype in self.shards[i]:
            n = _element_size(dtype) * int(torch.Size(shape).numel())
            header[name] = {
                "dtype": DTYPE_NAMES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + n],
            }
            offset += n
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self._file = open(self.folder / self.names[i], "wb")  # noqa: SIM115 (closed in _open_shard/close)
        self._file.write(struct.pack("<Q", len(blob)) + blob)
        self._shard = i

    def write(self, name: str, tensor: torch.Tensor) -> None:
        """Tensors must arrive in ``self.order``."""
        if self._next >= len(self.order) or self.order[self._next] != name:
            raise RuntimeError(f"tensor {name!r} written out of order")
        _, shape, dtype = self._expected[name]
        if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
            raise RuntimeError(
                f"tensor {name!r}: expected {tuple(shape)} {dtype}, got {tuple(tensor.shape)} {tensor.dtype}"
            )
        shard = self._shard_of[name]
        if shard != self._shard:
            self._open_shard(shard)
        self._file.write(tensor.contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        self._next += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._next != len(self.order):
            raise RuntimeError(f"{len(self.order) - self._next} tensors were never written")
        if len(self.shards) > 1:
            weight_map = {spec[0]: self.names[i] for i, s in enumerate(self.shards) for spec in s}
            total = sum(
                _element_size(d) * int(torch.Size(sh).numel()) for _, sh, d in self._expected.values()
            )
            (self.folder / f"{self.stem}.safetensors.index.json").write_text(
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"
            )
