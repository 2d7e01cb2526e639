"""The shift benchmark from Python: EXRM vs DPORM, WARM and ensembles, ID and under prompt / response
shift. Runs the ``ci`` preset (tiny local model, built-in synthetic task) in about a minute; pass
``--preset cpu`` for the demo model, or ``--recipe alpaca_eval --data FILE`` for real data.

    python examples/bench_shift.py [--out runs/bench-shift] [--preset ci] [--members 3]
"""

from __future__ import annotations

import argparse

from rewardkit.bench import resolve_config, run_shift_benchmark


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench-shift")
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--recipe", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--members", type=int, default=None)
    ap.add_argument("--n-train", type=int, default=None)
    args = ap.parse_args(argv)
    config = resolve_config(
        args.preset,
        overrides={
            "recipe": args.recipe,
            "data": args.data,
            "members": args.members,
            "n_train": args.n_train,
            "progress": False,
        },
    )
    report = run_shift_benchmark(config, args.out, force=True)
    print(report.to_markdown())
    return report


if __name__ == "__main__":
    main()
