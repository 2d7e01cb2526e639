"""Reward over-optimisation under RL from Python: TRL's GRPOTrainer against a proxy RM, with gold
reward, proxy reward and KL(pi || pi_init) measured on held-out prompts along training. Runs a small
slice of the ``ci`` preset (tiny local models, built-in task with a spurious feature): the single best
explicit RM, with and without Elastic Reset, in well under a minute. Needs ``rewardkit[rl]``.

    python examples/bench_hacking_rl.py [--out runs/bench-hacking-rl] [--steps 20] [--proxies EXRM-1,EXRM-1+ER]
"""

from __future__ import annotations

import argparse

from rewardkit.bench import resolve_hacking_config, run_hacking_benchmark
from rewardkit.bench.hacking_rl_report import rl_markdown


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench-hacking-rl")
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--steps", type=int, default=20, help="GRPO steps per run")
    ap.add_argument("--proxies", default="EXRM-1,EXRM-1+ER", help="comma-separated RL proxies")
    args = ap.parse_args(argv)
    config = resolve_hacking_config(
        args.preset,
        overrides={
            "optimizer": "rl",
            "members": 2,
            "dporm": False,
            "pretrain_seeds": [],
            "progress": False,
            "rl": {
                "steps": args.steps,
                "eval_every": max(1, args.steps // 2),
                "proxies": args.proxies.split(","),
            },
        },
    )
    report = run_hacking_benchmark(config, args.out, force=True)
    print(rl_markdown(report))
    for setup, models in report["rl"].items():  # what did RL buy by gold, and how far did it drift?
        for name, m in models.items():
            print(
                f"{setup} {name}: gold {m['gold'][0]:.2f} -> {m['gold'][-1]:.2f}, "
                f"proxy {m['proxy'][0]:.2f} -> {m['proxy'][-1]:.2f}, KL {m['kl'][-1]:.2f} nats"
            )
    return report


if __name__ == "__main__":
    main()
