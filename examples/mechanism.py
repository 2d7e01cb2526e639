"""Several groups' reward models, one policy, truthful payments (the affine maximizer mechanism).

    python examples/mechanism.py

Two groups (sizes 3 and 1) each have a reward model; one policy is chosen over 4 candidate responses per
prompt, pi* proportional to pi_init exp(sum_i w_i r_i / kl_coef). Each group pays p_i = (the others' best
welfare without it) - (the others' welfare at pi*). A group that polarises its report (all reward on
its favourite answer) gains without payments and loses with them.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from rewardkit import BradleyTerryRM
from rewardkit.mechanism import aggregate, normalize_rewards, utility
from rewardkit.tiny import build_tiny_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kl-coef", type=float, default=0.2)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardkit-mechanism-") as tmp:
        work = Path(tmp)
        base = build_tiny_model(work / "base")
        rms = [BradleyTerryRM.from_pretrained(base, head_seed=s) for s in (1, 2)]  # two groups' reward models
        prompts = ["tell me about pasta", "explain the star"]
        candidates = [
            [" good clear", " bad vague", " kind useful", " the recipe"],
            [" wrong", " precise great", " vague", " the cell"],
        ]
        out = aggregate(rms, [3.0, 1.0], prompts, candidates, kl_coef=args.kl_coef)
        # group 1 on prompt 0: truthful vs polarised report, with and without payments
        true = normalize_rewards(np.stack([rm.score([prompts[0]] * 4, candidates[0]) for rm in rms]))
        lie = true.copy()
        lie[1] = np.eye(4)[np.argmax(true[1])]
        kw = dict(weights=[3.0, 1.0], kl_coef=args.kl_coef)
        result = {
            "best_candidates": out.best,
            "payments": out.payments.round(4).tolist(),
            "utilities": out.utilities.round(4).tolist(),
            "polarising_gain_without_payments": utility(true[1], 1, lie, payments=False, **kw)
            - utility(true[1], 1, true, payments=False, **kw),
            "polarising_gain_with_payments": utility(true[1], 1, lie, **kw) - utility(true[1], 1, true, **kw),
        }
        print(result)
        return result


if __name__ == "__main__":
    main()
