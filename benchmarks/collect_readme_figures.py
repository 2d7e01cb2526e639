"""Collect the README's measured figures from runs of ``benchmarks/readme_figures.sh`` into one JSON.

    python3 benchmarks/collect_readme_figures.py --run r1=/tmp/rk-figures-r1 --run r2=/tmp/rk-figures-r2 \
        --logs /tmp/rk-figures-logs --out benchmarks/results/readme_figures.json

For every job: the command, each run's wall time (and its commit and CPU), whether the runs' results are
identical (they are seeded), and the last run's results: accuracies with CIs and paired tests (shift),
the best-of-N tables (hacking) and the RL summary (rl). The timings differ by host and load; the results
do not depend on load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path

JOBS = {
    "main": ("rewardkit bench shift --preset cpu --out runs/shift --force", "runs/shift"),
    "hacking": ("rewardkit bench hacking --preset cpu --out runs/hacking --force", "runs/hacking"),
    "rl": ("rewardkit bench hacking --preset cpu --optimizer rl --out runs/hacking-rl --force", "runs/hacking-rl"),
    "alpaca": (
        "rewardkit bench shift --preset cpu --recipe alpaca_eval --data ../shared/data/alpaca_eval_gpt4.jsonl.gz "
        "--out runs/shift-alpaca --force",
        "runs/shift-alpaca",
    ),
}
_LINE = re.compile(r"^(\w+) rc=(\d+) ([\d.]+) s")


def read_times(path: Path) -> dict:
    head, times = path.read_text().splitlines(), {}
    first = head[0].split()
    for line in head[1:]:
        m = _LINE.match(line)
        if m:
            times[m.group(1)] = {"rc": int(m.group(2)), "wall_s": float(m.group(3))}
    return {"commit": first[1], "cpu": " ".join(first[2:]).split(" start ")[0].removeprefix("cpu "), "jobs": times}


#: the numbers the README quotes, per report; runs are identical when these are (a config field renamed
#: between two commits does not make their numbers differ)
NUMBERS = ("models", "paired_tests", "splits", "setups", "rl")


def results(report: dict, keep: tuple[str, ...] = NUMBERS) -> dict:
    return {k: report[k] for k in keep if k in report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, help="TAG=CLONE_FOLDER, in order")
    ap.add_argument("--logs", default="/tmp/rk-figures-logs")
    ap.add_argument("--out", default="benchmarks/results/readme_figures.json")
    args = ap.parse_args()
    runs = [r.split("=", 1) for r in args.run]
    out: dict = {"runs": {tag: read_times(Path(args.logs) / f"{tag}.times") for tag, _ in runs}, "jobs": {}}
    for job, (command, folder) in JOBS.items():
        reports = []
        for tag, clone in runs:
            path = Path(clone) / folder / "report.json"
            if path.exists():
                reports.append((tag, json.loads(path.read_text())))
        if not reports:
            continue
        last_tag, last = reports[-1]
        out["jobs"][job] = {
            "command": command,
            "wall_s": {tag: out["runs"][tag]["jobs"].get(job, {}).get("wall_s") for tag, _ in runs},
            "cpu": {tag: r.get("versions", {}).get("cpu") for tag, r in reports},
            "timings": {tag: r.get("timings") for tag, r in reports},
            "identical_results": all(results(r) == results(last) for _, r in reports),
            "results_of": last_tag,
            "results": results(last, NUMBERS + ("data", "config")),
        }
    for tag, _ in runs:
        if "tests" in out["runs"][tag]["jobs"]:
            log = Path(args.logs) / f"{tag}.tests.log"
            tail = log.read_text().strip().splitlines()[-1] if log.exists() else ""
            out["runs"][tag]["jobs"]["tests"]["summary"] = tail
    fd, tmp = tempfile.mkstemp(dir=Path(args.out).parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(out, f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.out)
    for job, v in out["jobs"].items():
        print(job, v["wall_s"], "identical" if v["identical_results"] else "DIFFERENT")


if __name__ == "__main__":
    main()
