"""DPO implicit reward models: score with two causal LMs, then DPO-train a policy and score with it.

    python examples/dporm.py [--model PATH]

Without --model a tiny model is built locally and trained on the synthetic preference task.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rewardkit import DPOImplicitRM, load_reward_model, train_dpo
from rewardkit.synthetic import make_synthetic_preferences
from rewardkit.tiny import build_tiny_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--beta", type=float, default=0.1)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardkit-dporm-") as tmp:
        work = Path(tmp)
        model = args.model or build_tiny_model(work / "sft")
        train, test = make_synthetic_preferences(400, seed=0), make_synthetic_preferences(200, seed=1)

        untrained = DPOImplicitRM.from_pretrained(model, model, beta=args.beta)  # policy == reference: r = 0
        rm = train_dpo(model, train, out=work / "dpo", beta=args.beta, lr=3e-3, epochs=3, batch_size=16).model
        result = {
            "untrained_accuracy": untrained.score_pairs(test).accuracy(),
            "dpo_accuracy": load_reward_model(work / "dpo").score_pairs(test).accuracy(),
            "mean_margin": float(rm.score_pairs(test).margins.mean()),
        }
        print(result)
        return result


if __name__ == "__main__":
    main()
