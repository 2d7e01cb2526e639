"""The over-optimisation benchmark from Python: the gold reward of each proxy's best-of-N pick as N
grows, for single explicit RMs, WARM, prediction ensembles and the DPORM, with clean and corrupted
training labels. Runs the ``ci`` preset (tiny local model, built-in task with a spurious feature) in
well under a minute; pass ``--preset cpu`` for the demo model.

    python examples/bench_hacking.py [--out runs/bench-hacking] [--preset ci] [--members 3]
"""

from __future__ import annotations

import argparse

from rewardkit.bench import resolve_hacking_config, run_hacking_benchmark
from rewardkit.bench.hacking_report import to_markdown


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench-hacking")
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--members", type=int, default=None)
    ap.add_argument("--k", type=int, default=None, help="candidates per prompt (largest N)")
    ap.add_argument("--no-dporm", action="store_true")
    args = ap.parse_args(argv)
    config = resolve_hacking_config(
        args.preset,
        overrides={
            "members": args.members,
            "k": args.k,
            "dporm": False if args.no_dporm else None,
            "progress": False,
        },
    )
    report = run_hacking_benchmark(config, args.out, force=True)
    print(to_markdown(report))
    for setup, s in report["setups"].items():  # which proxy survives optimisation best?
        best = max(s["models"], key=lambda m: s["models"][m]["gold"][-1])
        print(f"{setup}: best gold at N={s['n'][-1]}: {best} ({s['models'][best]['gold'][-1]:.2f})")
    return report


if __name__ == "__main__":
    main()
