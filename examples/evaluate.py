"""Compare an explicit and a DPO implicit reward model in and out of distribution, with CIs and a
paired test; then best-of-N with the EXRM as proxy.

    python examples/evaluate.py [--out runs/evaluate]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rewardkit import train_dpo, train_reward_model
from rewardkit.eval import bon_curve, evaluate
from rewardkit.synthetic import gold_reward, make_synthetic_preferences
from rewardkit.tiny import build_tiny_model


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/evaluate")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardkit-evaluate-") as tmp:
        model = build_tiny_model(Path(tmp) / "lm")
        train = make_synthetic_preferences(400, seed=0, generators=("gen_a",))
        splits = {
            "id": make_synthetic_preferences(200, seed=1, generators=("gen_a",)),
            "response_shift": make_synthetic_preferences(200, seed=2, generators=("gen_b", "gen_c")),
        }
        exrm = train_reward_model(model, train, epochs=3, lr=3e-3, batch_size=16, progress=False).model
        dporm = train_dpo(model, train, epochs=3, lr=3e-3, beta=0.1, batch_size=16, progress=False).model
        report = evaluate({"exrm": exrm, "dporm": dporm}, splits, id_split="id", n_boot=1000)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report.to_json(out / "report.json")
        report.plot(out / "report.png")
        print(report.to_markdown())

        cands = make_synthetic_preferences(160, seed=5)
        prompts = [cands[i * 4].prompt for i in range(40)]
        candidates = [
            [r for p in cands[i * 4 : (i + 1) * 4] for r in (p.chosen, p.rejected)] for i in range(40)
        ]
        gold = [[gold_reward(c) for c in cs] for cs in candidates]
        curve = bon_curve(exrm, gold, prompts, candidates, ns=[1, 2, 4, 8])
        print("best-of-N (EXRM proxy):", {n: round(g, 2) for n, g in zip(curve["n"], curve["gold"])})
        return report, curve


if __name__ == "__main__":
    main()
