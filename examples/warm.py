"""WARM on the synthetic task: train 3 reward models with a diversity grid, average their weights,
compare the merge with its members and the prediction ensemble under response shift; LMC curve.

    python examples/warm.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rewardkit import load_ensemble, load_reward_model
from rewardkit.merge import lmc_curve
from rewardkit.synthetic import make_synthetic_preferences
from rewardkit.tiny import build_tiny_model
from rewardkit.train import train_warm


def main(argv=None) -> dict:
    with tempfile.TemporaryDirectory(prefix="rewardkit-warm-") as tmp:
        work = Path(tmp)
        base = build_tiny_model(work / "lm")
        train = make_synthetic_preferences(400, seed=0, generators=("gen_a",))
        ood = make_synthetic_preferences(300, seed=2, generators=("gen_b", "gen_c"))
        grid = [
            {"head_seed": 0, "data_seed": 0, "lr": 3e-3},
            {"head_seed": 1, "data_seed": 1, "lr": 2e-3},
            {"head_seed": 2, "data_seed": 2, "lr": 3e-3, "dropout": 0.1},
        ]
        res = train_warm(base, train, work / "warm", grid, epochs=2, batch_size=16, progress=False)
        members = [load_reward_model(m).score_pairs(ood).accuracy() for m in res["members"]]
        result = {
            "members_ood": members,
            "warm_ood": load_reward_model(res["warm"]).score_pairs(ood).accuracy(),
            "ensemble_ood": load_ensemble(res["members"]).score_pairs(ood).accuracy(),
            "lmc": lmc_curve(res["members"][0], res["members"][1], ood, ts=[0.0, 0.5, 1.0]),
        }
        print(result)
        return result


if __name__ == "__main__":
    main()
