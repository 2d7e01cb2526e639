"""Streaming merge vs just reading the inputs, same run.

Builds M = 4 synthetic full checkpoints (random fp32 weights in the shapes of SmolLM2-135M as a
sequence-classification RM, ~513 MB each) and times, in fresh subprocesses, interleaved and repeated:

- ``read``: every input file read once, start to end, into a reused 64-byte-aligned 4 MiB buffer, all
  files requested from the disk up front (``posix_fadvise(WILLNEED)``): the fastest plain read (a
  bytearray destination, being only 16-byte aligned, makes the kernel's copy ~5x slower here, and
  reading the files one by one without the request ~1.5x slower from a cold cache);
- ``merge``: ``weight_average`` of the 4 inputs (reads, xxh3 provenance hashes, float32 accumulation,
  writes a 513 MB output), with its peak RSS growth (VmHWM reset after start-up);
- ``weighted``: the same with weights 0.4 / 0.3 / 0.2 / 0.1, whose products are inexact in float32, so
  every term takes the fused multiply-add emulation that keeps the result equal to mergekit's.

Each is run with the inputs evicted from the page cache (``cold``: ``posix_fadvise(DONTNEED)``, so
they come from the disk, as when merging checkpoints a training run wrote earlier) and with them
cached (``warm``: read just before). Dirty pages are flushed (``sync``) and the previous output is
removed before every timed run. The best of the repetitions is kept (this machine is shared).
Targets: merge time <= 1.5x read time; peak RSS growth <= 1x the size of one input checkpoint.

    python benchmarks/merge.py [--reps 5] [--out benchmarks/results/merge.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import proc_status, reset_peak_rss, save_results

M = 4


def make_members(folder: Path, dtype: str = "float32") -> list[Path]:
    """``M`` random checkpoints in SmolLM2-135M's seq-cls shapes (fp32: ~513 MB each; bf16: ~257 MB)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForSequenceClassification, LlamaConfig

    cfg = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        num_labels=1,
        tie_word_embeddings=True,
    )
    with torch.device("meta"):
        shapes = {
            k: v.shape for k, v in AutoModelForSequenceClassification.from_config(cfg).state_dict().items()
        }
    paths = []
    for i in range(M):
        g = torch.Generator().manual_seed(i)
        state = {k: (torch.randn(s, generator=g) * 0.02).to(getattr(torch, dtype)) for k, s in shapes.items()}
        p = folder / f"member{i}"
        p.mkdir()
        save_file(state, str(p / "model.safetensors"), metadata={"format": "pt"})
        cfg.save_pretrained(p)
        paths.append(p)
        del state
    return paths


def _files(members: list[Path]) -> list[Path]:
    return [m / "model.safetensors" for m in members]


def read_all(files: list[Path]) -> None:
    import numpy as np  # 0.07 s to import; torch (1 s) would make the baseline look slow

    raw = np.empty(4 * 2**20 + 64, dtype=np.uint8)
    buf = raw[-raw.ctypes.data % 64 :][: 4 * 2**20]  # 64-byte aligned, reused
    for f in files:  # ask for every file up front: the disk reads them in parallel, in the background
        fd = os.open(f, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        os.close(fd)
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            offset = 0
            while n := os.preadv(fd, [buf], offset):
                offset += n
        finally:
            os.close(fd)


def evict(files: list[Path]) -> None:
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def child(mode: str, cache: str, folder: Path, members: list[Path]) -> None:
    from rewardkit.merge import weight_average

    out = folder / "merged"
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    evict(_files(members)) if cache == "cold" else read_all(_files(members))
    base = reset_peak_rss()
    t0 = time.perf_counter()
    if mode == "read":
        read_all(_files(members))
    else:
        weights = [0.4, 0.3, 0.2, 0.1] if mode == "weighted" else None
        weight_average(members, weights, out=out, progress=False)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_rss_growth_bytes": proc_status("VmHWM:") - base}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "merge.json"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--child", nargs=2, default=None, metavar=("MODE", "CACHE"))
    ap.add_argument("--folder", default=None)
    args = ap.parse_args()
    if args.child:
        folder = Path(args.folder)
        return child(*args.child, folder, sorted(folder.glob("member*")))
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="rewardkit-merge-bench-", dir=os.environ.get("TMPDIR")) as tmp:
        members = make_members(Path(tmp))
        size = (members[0] / "model.safetensors").stat().st_size
        for _ in range(args.reps):
            for cache in ("cold", "warm"):
                for mode in ("read", "merge", "weighted"):
                    cmd = [sys.executable, __file__, "--child", mode, cache, "--folder", tmp]
                    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    runs.setdefault(f"{cache}_{mode}", []).append(
                        json.loads(r.stdout.strip().splitlines()[-1])
                    )
    best = {k: min(r["seconds"] for r in v) for k, v in runs.items()}
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    peak = max(r["peak_rss_growth_bytes"] for k, v in runs.items() if not k.endswith("read") for r in v)
    result = {
        "members": M,
        "input_checkpoint_mb": size / 2**20,
        "reps": args.reps,
        "seconds_best": best,
        "seconds_median": median,
        "cold_merge_over_read": best["cold_merge"] / best["cold_read"],
        "cold_merge_over_read_median": median["cold_merge"] / median["cold_read"],
        "warm_merge_over_read": best["warm_merge"] / best["warm_read"],
        "cold_weighted_over_read": best["cold_weighted"] / best["cold_read"],
        "warm_weighted_over_merge": best["warm_weighted"] / best["warm_merge"],
        "merge_peak_rss_growth_mb": peak / 2**20,
        "peak_rss_growth_over_one_input": peak / size,
        "targets": {"merge_over_read": "<= 1.5", "peak_rss_growth_over_one_input": "<= 1.0"},
        "runs": runs,
    }
    save_results(args.out, result)


if __name__ == "__main__":
    main()
