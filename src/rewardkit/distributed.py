"""Data-parallel scoring under torchrun / accelerate launch: each rank scores a strided shard, rank 0
gathers the results and restores input order. Training needs none of this (Trainer handles it)."""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment; (0, 1) when not launched in parallel."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed() -> tuple[int, int, torch.device | None]:
    """Join the process group when launched with several processes; returns (rank, world, device)."""
    rank, size = world()
    if size == 1:
        return 0, 1, None
    import torch
    import torch.distributed as dist

    device = None
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device is not None else "gloo")
        atexit.register(leave_group)
    return rank, size, device


def leave_group() -> None:
    """Destroy the default process group if this process joined one (ours or the Trainer's); a
    process that exits with it alive can abort in gloo's thread teardown ("terminate called without an
    active exception", SIGABRT) after its work is done."""
    dist = sys.modules.get("torch.distributed")  # never imports torch itself
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, rank: int, size: int) -> list[int]:
    """This rank's strided share of ``n`` items (``rank, rank + size, ...``): the one sharding rule."""
    return list(range(rank, n, size))


def score_sharded(score: Callable[[list[int]], Any], n: int, rank: int = 0, size: int = 1) -> np.ndarray:
    """``score(indices)`` over this rank's :func:`shard` of ``n`` items (an array with one row per
    index); every rank receives all ``n`` rows, in input order, as float64."""
    idx = shard(n, rank, size)
    mine = np.asarray(score(idx), dtype=np.float64) if idx else np.zeros(0)
    if size == 1:
        return mine
    import torch.distributed as dist

    parts: list[Any] = [None] * size
    dist.all_gather_object(parts, (idx, mine.tolist()))
    out = np.zeros(0)
    for part_idx, values in parts:
        if part_idx:
            values = np.asarray(values, dtype=np.float64)
            if out.shape[0] != n:  # the first non-empty shard gives the row shape
                out = np.empty((n,) + values.shape[1:])
            out[part_idx] = values
    return out


def gather_rows(rows: list[dict[str, Any]], rank: int, size: int) -> list[dict[str, Any]] | None:
    """Rank 0 receives every rank's rows (each with an ``index``) sorted by index; others get None."""
    if size == 1:
        return sorted(rows, key=lambda r: r["index"])
    import torch.distributed as dist

    parts: list[Any] | None = [None] * size if rank == 0 else None
    dist.gather_object(rows, parts, dst=0)
    if rank != 0:
        return None
    return sorted((r for part in parts for r in part), key=lambda r: r["index"])
