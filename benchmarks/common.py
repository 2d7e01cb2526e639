"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

# The AlpacaEval pairs: $REWARDKIT_ALPACA, else ../shared/data/ beside the checkout.
DATA = Path(
    os.environ.get("REWARDKIT_ALPACA")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval_gpt4.jsonl.gz"
)


def proc_status(key: str) -> int:
    """``VmRSS:`` / ``VmHWM:`` of this process in bytes (Linux)."""
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))


def reset_peak_rss() -> int:
    """Reset the peak-RSS mark (VmHWM) so start-up does not count; returns the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return proc_status("VmRSS:")


def sample_pairs(n: int, seed: int = 0):
    """``n`` AlpacaEval pairs sampled with a fixed seed, in file order, through the ``alpaca_eval``
    recipe: each instruction is a user message, so an instruct model sees it chat-templated."""
    from rewardkit.bench.recipes import load_recipe

    pairs = load_recipe("alpaca_eval", DATA, on_error="skip")
    return [pairs[i] for i in sorted(random.Random(seed).sample(range(len(pairs)), n))]


def save_results(path: str | Path, result: dict[str, Any], show: bool = True) -> None:
    """Write a benchmark's JSON (atomically; NaN refused) and, with ``show``, print it without the raw
    ``runs``."""
    from rewardkit.io import dumps, write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    if show:
        print(dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
