"""The scoring engine: token-budget batches, input order restored, rewards independent of the batching.

    python examples/scoring.py [--model PATH] [--max-tokens 1024]

Without --model a tiny model is built locally. Scores 200 synthetic pairs twice, once with the engine's
token budget and once one sequence at a time, and reports how many batches ran, the padded tokens per
real token (beside the rounding of each sequence alone to a multiple of 8, and batches of 8 in input
order), the largest reward difference between the two runs and the time each took.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rewardkit import BradleyTerryRM
from rewardkit.scoring import padded_tokens, plan_batches
from rewardkit.synthetic import make_synthetic_preferences
from rewardkit.tiny import build_tiny_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--max-tokens", type=int, default=1024)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardkit-scoring-") as tmp:
        model = args.model or build_tiny_model(Path(tmp) / "lm")
        rm = BradleyTerryRM.from_pretrained(model, head_seed=0)
        pairs = make_synthetic_preferences(200, seed=3)

        # what the engine will do: sequences sorted by length, packed under the budget
        items = [rm.formatter.encode(p.prompt, r) for p in pairs for r in (p.chosen, p.rejected)]
        lengths = [len(x) for x in items]
        plan = plan_batches(lengths, args.max_tokens)
        padded = padded_tokens(lengths, plan)
        rounded = padded_tokens(lengths, [[i] for i in range(len(lengths))])  # each alone, to a multiple of 8
        # what a plain loop computes: batches of 8 in input order, padded to their longest sequence
        naive_padded = padded_tokens(
            lengths, [range(lo, min(lo + 8, len(lengths))) for lo in range(0, len(lengths), 8)], 1
        )

        rm.configure(max_tokens=args.max_tokens)
        t = time.perf_counter()
        batched = rm.score_pairs(pairs)
        batched_s = time.perf_counter() - t
        rm.configure(max_tokens=1)  # one sequence per batch
        t = time.perf_counter()
        single = rm.score_pairs(pairs)
        single_s = time.perf_counter() - t

        result = {
            "sequences": len(items),
            "batches": len(plan),
            "padded_per_real_token": padded / sum(lengths),
            "rounded_per_real_token": rounded / sum(lengths),
            "input_order_padded_per_real_token": naive_padded / sum(lengths),
            "max_abs_diff": float(
                max(
                    np.abs(batched.chosen - single.chosen).max(),
                    np.abs(batched.rejected - single.rejected).max(),
                )
            ),
            "batched_seconds": batched_s,
            "one_at_a_time_seconds": single_s,
        }
        print(result)
        return result


if __name__ == "__main__":
    main()
