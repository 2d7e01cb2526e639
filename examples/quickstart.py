"""Train an explicit (Bradley-Terry) reward model and evaluate it in and out of distribution.

Runs anywhere in about a minute: a tiny model built locally and the built-in synthetic preference task
(train on two prompt domains and one response generator; test on held-out pairs of the same
distribution (ID) and on unseen domains / generators (OOD)). Pass --model to use a real checkpoint,
e.g. ``--model $(rewardkit demo-model)``.

    python examples/quickstart.py [--model PATH] [--out runs/quickstart]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rewardkit import train_reward_model
from rewardkit.synthetic import make_synthetic_preferences
from rewardkit.tiny import build_tiny_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="base checkpoint (default: a tiny model built now)")
    ap.add_argument("--out", default="runs/quickstart", help="folder for the report")
    ap.add_argument("--pairs", type=int, default=600)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--lora-r", type=int, default=None)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rewardkit-tiny-") as tmp:
        model = args.model or build_tiny_model(Path(tmp) / "lm")
        train_kw = dict(domains=("cooking", "travel"), generators=("gen_a",))
        train = make_synthetic_preferences(args.pairs, seed=0, **train_kw)
        splits = {
            "id": make_synthetic_preferences(300, seed=1, **train_kw),
            "prompt_shift": make_synthetic_preferences(
                300, seed=2, domains=("science", "finance"), generators=("gen_a",)
            ),
            "response_shift": make_synthetic_preferences(
                300, seed=3, domains=("cooking", "travel"), generators=("gen_b", "gen_c")
            ),
        }
        rm = train_reward_model(
            model, train, epochs=args.epochs, lr=args.lr, lora_r=args.lora_r, batch_size=16, logging_steps=20
        ).model
        report = {name: rm.score_pairs(pairs).accuracy() for name, pairs in splits.items()}
        print("\n| split | pairs | accuracy |\n|---|---|---|")
        for name, acc in report.items():
            print(f"| {name} | {len(splits[name])} | {acc:.3f} |")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nreport written to {out / 'report.json'}")
        return report


if __name__ == "__main__":
    main()
