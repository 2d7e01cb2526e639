"""An ensemble of 3 explicit reward models trained with different seeds: aggregation, z-scores fitted on
a calibration set, and uncertainty as an abstention signal.

    python examples/ensemble.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rewardkit import load_ensemble, train_reward_model
from rewardkit.eval import selective_accuracy
from rewardkit.synthetic import make_synthetic_preferences
from rewardkit.tiny import build_tiny_model


def main(argv=None) -> dict:
    with tempfile.TemporaryDirectory(prefix="rewardkit-ens-") as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "lm")
        train = make_synthetic_preferences(300, seed=0, generators=("gen_a",))
        calibration = make_synthetic_preferences(100, seed=9, generators=("gen_a",))
        test = make_synthetic_preferences(300, seed=1, generators=("gen_b", "gen_c"))  # response shift
        paths = []
        for s in range(3):
            train_reward_model(
                model,
                train,
                out=work / f"rm{s}",
                head_seed=s,
                data_seed=s,
                epochs=2,
                lr=3e-3,
                batch_size=16,
                progress=False,
            )
            paths.append(work / f"rm{s}")
        ens = load_ensemble(paths, aggregation="mean_minus_std", uncertainty_penalty=1.0, normalize="zscore")
        ens.fit_normalization(
            calibration.prompts * 2, [p.chosen for p in calibration] + [p.rejected for p in calibration]
        )
        n = len(test)
        u = ens.score_with_uncertainty(
            test.prompts * 2, [p.chosen for p in test] + [p.rejected for p in test]
        )
        margins, std = u.aggregate[:n] - u.aggregate[n:], u.std[:n] + u.std[n:]
        member_acc = [float(((m[:n] - m[n:]) > 0).mean()) for m in u.members]
        curve = selective_accuracy(margins, std, [1.0, 0.5])
        result = {"members": member_acc, "ensemble": curve[0][1], "ensemble_at_50pct_coverage": curve[1][1]}
        print(result)
        ens.save(work / "ensemble")
        return result


if __name__ == "__main__":
    main()
