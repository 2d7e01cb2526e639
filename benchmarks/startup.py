"""Start-up: what a user pays before any work, measured in fresh processes, interleaved and repeated.

- ``python -c pass`` (the interpreter alone: the floor), ``import rewardkit``, ``rewardkit --help``;
- ``rewardkit merge`` of four bf16 checkpoints in SmolLM2-135M's shapes (~257 MB each), start-up
  included, against just reading the four files (``read``: the fastest plain read, see merge.py), with
  the inputs evicted from the page cache (``cold``) and cached (``warm``).

Targets (issue 17): ``import rewardkit`` <= 1 s, ``rewardkit --help`` <= 1 s, the merge command <= 2x the
read. The best of the repetitions is kept (this machine is shared).

    python benchmarks/startup.py [--reps 5] [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import save_results
from merge import evict, make_members, read_all

RESULTS = Path(__file__).parent / "results"
SCRIPT = str(Path(sys.executable).parent / "rewardkit")


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS / "startup.json"))
    args = ap.parse_args()
    commands = {
        "python_pass": [sys.executable, "-c", "pass"],
        "import_rewardkit": [sys.executable, "-c", "import rewardkit"],
        "rewardkit_help": [SCRIPT, "--help"],
        "first_model_class": [sys.executable, "-c", "import rewardkit; rewardkit.BradleyTerryRM"],
    }
    runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="rewardkit-startup-", dir=os.environ.get("TMPDIR")) as tmp:
        members = make_members(Path(tmp), "bfloat16")
        files = [m / "model.safetensors" for m in members]
        out = Path(tmp) / "merged"
        for _ in range(args.reps):
            for name, cmd in commands.items():
                runs.setdefault(name, []).append(timed(cmd))
            for cache in ("cold", "warm"):
                for mode in ("read", "merge"):
                    shutil.rmtree(out, ignore_errors=True)
                    os.sync()
                    evict(files) if cache == "cold" else read_all(files)
                    if mode == "read":
                        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); " + (
                            f"from merge import read_all; from pathlib import Path; read_all([Path(p) for p in {[str(f) for f in files]!r}])"
                        )
                        runs.setdefault(f"{cache}_read", []).append(timed([sys.executable, "-c", code]))
                    else:
                        cmd = [SCRIPT, "merge", *map(str, members), "-o", str(out)]
                        runs.setdefault(f"{cache}_merge_command", []).append(timed(cmd))
        size = files[0].stat().st_size
    best = {k: min(v) for k, v in runs.items()}
    result = {
        "input_checkpoint_mb": size / 2**20,
        "reps": args.reps,
        "seconds_best": best,
        "seconds_median": {k: statistics.median(v) for k, v in runs.items()},
        "cold_merge_command_over_read": best["cold_merge_command"] / best["cold_read"],
        "warm_merge_command_over_read": best["warm_merge_command"] / best["warm_read"],
        "targets": {
            "import_rewardkit": "<= 1 s",
            "rewardkit_help": "<= 1 s",
            "merge_command_over_read": "<= 2",
        },
        "runs": runs,
    }
    save_results(args.out, result)


if __name__ == "__main__":
    main()
