"""Weight averaging of saved reward models (WARM: phi = sum_i w_i phi_i, weights normalised to sum 1).

Full checkpoints are averaged key by key, streaming over safetensors: a handful of tensors in memory,
accumulated in float32, written in the inputs' dtype (or ``dtype``) into bounded shards. This path is
plain numpy (no torch import), so a merge costs little more than reading its inputs.

LoRA members are averaged exactly: W = W_base + sum_i w_i * s_i * B_i @ A_i (s_i = alpha_i / r_i, or
alpha_i / sqrt(r_i) with rsLoRA), merged into the shared base (dense output), and the reward heads
(saved in full with each adapter) are averaged directly. Averaging A and B separately, as peft's
``add_weighted_adapter(..., "linear")`` does, is not an average of the updates (it creates cross terms),
so it is not used. DoRA, LoRA biases and per-module rank / alpha patterns are refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.errors import ModelError
from rewardkit.io import atomic_dir, check_distinct, check_output, refuse_existing
from rewardkit.manifest import read_manifest
from rewardkit.merge.common import (
    DTYPES,
    check_weights,
    copy_model_files,
    mismatch,
    normalize_weights,
    parse_size,
    provenance,
)
from rewardkit.merge.kernel import (
    CHUNK,
    Plan,
    average_part,
    denominator,
    exact_product,
    fused_scratch,
)
from rewardkit.models.registry import model_dependencies
from rewardkit.safetensors_io import FLOATS, STORAGE, CheckpointReader, StreamingShardWriter, aligned_empty


def _check_same_tensors(
    readers: Sequence[CheckpointReader], sources: Sequence[Path], mixed_floats: bool
) -> None:
    """Every member has the first one's tensor names, shapes and dtypes; with ``mixed_floats`` (an
    output dtype was given) floating tensors may differ in dtype: each is widened exactly to float32."""
    ref = readers[0]
    ref_keys = set(ref.keys())
    for r, src in zip(readers[1:], sources[1:]):
        keys = set(r.keys())
        if keys != ref_keys:
            raise mismatch(f"{src} has different tensors than {sources[0]}", list(keys ^ ref_keys))
        bad, mixed = [], []
        for k in ref_keys:
            (shape, dt), (ref_shape, ref_dt) = r.meta(k), ref.meta(k)
            if shape != ref_shape or (dt != ref_dt and not (dt in FLOATS and ref_dt in FLOATS)):
                bad.append(k)
            elif dt != ref_dt:
                mixed.append(k)
        if bad:
            raise mismatch(f"{src} differs in shape or dtype from {sources[0]}", bad)
        if mixed and not mixed_floats:
            k = min(mixed)
            more = f" (and {len(mixed) - 1} more tensors)" if len(mixed) > 1 else ""
            raise ModelError(
                f"cannot merge: tensor {k!r} is {ref.meta(k)[1]} in {sources[0]} but {r.meta(k)[1]} in "
                f"{src}{more}; pass --dtype float32 (or bfloat16 / float16) to merge members of "
                "different dtypes"
            )


def _architecture(folder: Path) -> Any:
    cfg = folder / "config.json"
    return json.loads(cfg.read_text()).get("architectures") if cfg.is_file() else None


def _hasher():
    """A fast content hash (xxh3-128, ~10 GB/s; xxhash comes with datasets) for provenance."""
    import xxhash

    return xxhash.xxh3_128()


def weight_average(
    sources: Sequence[str | os.PathLike],
    weights: Sequence[float] | None = None,
    *,
    out: str | os.PathLike,
    dtype: str | None = None,
    shard_size: str | int = "2GB",
    force: bool = False,
    progress: bool | None = None,
    base_model: str | os.PathLike | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Average saved reward models (or DPO policies) into ``out``; returns ``out``.

    All members must share architecture, tensor names, shapes and dtypes (floating tensors may differ
    in dtype when ``dtype`` is given: each is widened exactly and accumulated in float32; LoRA members:
    the same base model, checked against the fingerprint each recorded; ``base_model`` overrides where
    the base is); any
    mismatch, a source given twice, an ``out`` that is or holds a source, or a NaN / infinite merged
    tensor raises before anything is written. ``out`` is written atomically and never overwritten
    unless ``force``. ``merge.json`` beside the weights records inputs, content hashes, normalised
    weights, the files copied and library versions; ``extra_files`` (name -> text, e.g. the merge's
    config) are written into the output before it is put in place.
    """
    from rewardkit.checkpoints import check_model_folder
    from rewardkit.io import protect

    srcs = [Path(s) for s in sources]
    if len(srcs) < 2:
        raise ModelError("weight averaging needs at least 2 models")
    check_distinct(srcs, "merge source")
    inputs = [d for s in srcs for d in model_dependencies(s, base_model)] + [base_model]
    protect(inputs)
    check_output(out, inputs, "merge output")
    refuse_existing(out, force)
    if dtype is not None and dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    raw = check_weights(weights, len(srcs))
    w = normalize_weights(raw, len(srcs))
    shard_bytes = parse_size(shard_size)
    for s in srcs:
        check_model_folder(s, "merge source", weights=False)
    manifests = [read_manifest(s) or {} for s in srcs]
    loras = [bool(m.get("lora")) or (s / "adapter_config.json").is_file() for m, s in zip(manifests, srcs)]
    if any(loras) and not all(loras):
        raise ModelError("cannot merge LoRA and full checkpoints together: merge LoRA members first")
    kinds = {m.get("kind", "explicit") for m in manifests}
    if len(kinds) > 1:
        raise ModelError(f"cannot merge reward models of different kinds: {sorted(kinds)}")
    if all(loras):
        from rewardkit.merge.lora import average_lora  # torch and transformers: only for LoRA members

        return average_lora(
            srcs,
            w,
            manifests,
            Path(out),
            dtype=dtype,
            force=force,
            base_model=base_model,
            extra_files=extra_files,
        )
    archs = {json.dumps(_architecture(s)) for s in srcs}
    if len(archs) > 1:
        raise ModelError(f"cannot merge different architectures: {sorted(archs)}")
    readers: list[CheckpointReader] = []
    try:
        for s in srcs:
            readers.append(CheckpointReader(s))
        return _average_full(
            srcs, readers, raw, manifests[0], Path(out), dtype, shard_bytes, force, progress, extra_files
        )
    finally:
        for r in readers:
            r.close()


def _average_full(
    srcs, readers, raw, manifest, out: Path, dtype, shard_size, force, progress, extra_files
) -> Path:
    _check_same_tensors(readers, srcs, mixed_floats=dtype is not None)
    ref = readers[0]
    specs = []
    for k in ref.keys():
        shape, in_dtype = ref.meta(k)
        if in_dtype not in STORAGE:
            raise ModelError(
                f"cannot merge: tensor {k!r} has dtype {in_dtype}, which the merge does not handle"
            )
        out_dtype = DTYPES[dtype] if dtype is not None and in_dtype in FLOATS else in_dtype
        specs.append((k, shape, out_dtype))
    from rewardkit.util import show_progress

    hashes = [_hasher() for _ in srcs]
    with atomic_dir(out, force=force) as tmp:
        writer = StreamingShardWriter(tmp, specs, shard_size)
        blocks = {k: _blocks(readers, k) for k in writer.order}
        prefetcher = _Prefetcher(readers, [b for k in writer.order for b in blocks[k]])
        accs = _Accumulators()
        try:
            keys = writer.order
            if show_progress(progress):  # tqdm (and the asyncio it imports) only when shown
                from tqdm.auto import tqdm

                keys = tqdm(keys, desc="merging", unit="tensor")
            for k in keys:
                in_dtypes, out_dtype = tuple(r.meta(k)[1] for r in readers), writer._expected[k][2]
                writer.write_parts(
                    k,
                    _averaged_blocks(k, len(blocks[k]), prefetcher, accs, raw, hashes, in_dtypes, out_dtype),
                )
        except BaseException:
            writer.abort()
            raise
        finally:
            prefetcher.close()
        writer.close()
        copied = copy_model_files(srcs[0], tmp)
        w = normalize_weights(raw, len(srcs))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        provenance(tmp, srcs, w, [h.hexdigest() for h in hashes], manifest, dtype, lora=False, copied=copied)
    return out


BLOCK_BYTES = 4 * 2**20  # rows of a large tensor are merged in blocks of about this many input bytes


def _blocks(readers: Sequence[CheckpointReader], key: str) -> list[tuple[str, int, int]]:
    """(key, first row, end row) of each block of ``key``, sized by its widest member; one block for
    a scalar."""
    shape, _ = readers[0].meta(key)
    if not shape:
        return [(key, 0, 0)]
    nbytes = max(r.entries[key][4] for r in readers)
    step = max(1, shape[0] * BLOCK_BYTES // max(nbytes, 1))
    return [(key, lo, min(shape[0], lo + step)) for lo in range(0, max(shape[0], 1), step)]


class _Prefetcher:
    """Reads every member's next blocks in a background thread (file reads release the GIL), so the
    disk, the averaging and the writer's thread work at the same time. Read buffers are reused
    (fresh allocations would page-fault on every block): ``depth`` + 1 sets of one per member."""

    def __init__(self, readers, plan: list[tuple[str, int, int]], depth: int = 3):
        import queue
        import threading

        self.free: queue.Queue = queue.Queue()
        self.filled: queue.Queue = queue.Queue()
        for _ in range(depth + 1):
            self.free.put([aligned_empty(BLOCK_BYTES + 2**16) for _ in readers])
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(readers, plan), name="rewardkit-reader", daemon=True
        )
        self._thread.start()

    def _run(self, readers, plan) -> None:
        try:
            for key, lo, hi in plan:
                bufs = self.free.get()
                if self._stop.is_set():
                    return
                self.filled.put(([r.get_rows(key, lo, hi, b) for r, b in zip(readers, bufs)], bufs))
        except BaseException as e:  # handed to the consumer, which re-raises it
            self.filled.put(e)

    def next(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        item = self.filled.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self.free.put(None)  # wakes the thread if it waits for a buffer
        self._thread.join()


class _Accumulators:
    """Scratch for the averaging, reused from block to block (fresh allocations would page-fault on
    every block): two float32 accumulators and two output buffers per dtype used in turn (one block is
    written out by the writer's thread, which has at most one write in flight, while the next is
    computed), one float32 / one uint32 buffer for a chunk's terms and bits, and the fused path's
    scratch. (Splitting a block between two compute threads was slower on 2 cores, where the reader and
    the writer need the second one.)"""

    def __init__(self):
        self.size = BLOCK_BYTES // 2 + 2**14  # elements of a block of the narrowest input (2 bytes)
        self.accs = [np.empty(self.size, np.float32) for _ in range(2)]
        self.outs: dict[str, list[np.ndarray]] = {}
        self.scratch = (np.empty(CHUNK, np.float32), np.empty(CHUNK, np.uint32), fused_scratch())
        self.turn = 0

    def next(self, n: int, out_dtype: str) -> tuple[np.ndarray, np.ndarray]:
        """This turn's accumulator and output buffer of ``n`` elements (the same array for float32)."""
        turn, self.turn = self.turn % 2, self.turn + 1
        if n > self.size:  # a block larger than planned (a single huge row): its own buffers
            acc = np.empty(n, np.float32)
            return acc, acc if out_dtype == "F32" else np.empty(n, STORAGE[out_dtype])
        acc = self.accs[turn][:n]
        if out_dtype == "F32":
            return acc, acc
        outs = self.outs.setdefault(out_dtype, [np.empty(self.size, STORAGE[out_dtype]) for _ in range(2)])
        return acc, outs[turn][:n]


def _averaged_blocks(
    key, n_blocks, prefetcher, accs, raw: Sequence[float], hashes, in_dtypes: tuple[str, ...], out_dtype: str
):
    """Yield the weighted average of ``key`` over the members block of rows by block of rows, so peak
    memory is a few blocks however large the tensor. Each yielded block stays valid until the one after
    the next has been computed.

    Every term is computed in float32 (a bf16 or fp16 input, each member in its own dtype
    ``in_dtypes[i]``, is widened exactly first), in mergekit's
    order and rounding: ``acc = fma(t_i, w_i, acc)`` for each member from ``acc = 0`` (torch's
    ``addcmul_``: the product is not rounded before it is added), then ``acc / sum_i w_i``, with the
    weights as given, so the result equals mergekit's linear merge bit for bit. Where every product is
    exact in float32 (weights 1, the default, or other short weights >= 1) a multiply and an add give
    the same bits; otherwise :func:`fused_add` emulates the fused step. The work goes chunk by chunk
    (:data:`CHUNK` elements), every member and step at once, so it stays in the CPU's cache."""
    coef = np.asarray(raw, dtype=np.float32)
    denom = denominator(coef)
    fused = not all(exact_product(c, d) for c, d in zip(coef, in_dtypes) if d != "F64")
    mantissa = int(denom.view(np.uint32)) & 0x7FFFFF
    # dividing by a power of two is multiplying by its inverse, bit for bit, and cheaper
    scale = np.float32(1 / denom) if mantissa == 0 and 2.0**-100 < denom < 2.0**100 else None
    plan = Plan(coef, denom, scale, fused, in_dtypes, out_dtype)
    for _ in range(n_blocks):
        tensors, bufs = prefetcher.next()
        for h, t in zip(hashes, tensors):
            if t.size:
                h.update(t.reshape(-1).view(np.uint8))
        shape = tensors[0].shape
        if in_dtypes[0] not in FLOATS:  # integer buffers cannot be averaged: they must agree
            if any(not np.array_equal(tensors[0], t) for t in tensors[1:]):
                raise mismatch("integer tensors differ between members", [key])
            out = tensors[0].copy()
            prefetcher.free.put(bufs)
            yield out
            continue
        flat = [t.reshape(-1) for t in tensors]
        acc, out = accs.next(flat[0].size, out_dtype)
        nonfinite, overflow = average_part(acc, out, flat, accs.scratch, plan)
        if nonfinite:
            count = int(acc.size - np.isfinite(acc).sum())
            what = f"{count} of {acc.size} values are" if n_blocks == 1 else f"{count} values are"
            raise ModelError(
                f"merged tensor {key!r}: {what} NaN or infinite (a source holds non-finite weights); "
                "nothing written"
            )
        if overflow:
            raise ModelError(f"merged tensor {key!r}: values beyond {out_dtype}'s range; nothing written")
        prefetcher.free.put(bufs)
        yield out.reshape(shape)
