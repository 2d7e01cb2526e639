"""Length-penalised rewards (CourseGPT-zh): a reward model that prefers long answers, before and after
the penalty s - length_penalty * max(0, len / ref_len - 1).

    python examples/length_penalty.py [--length-penalty 10]

A tiny reward model is trained on a synthetic task whose preferred answers are the longer ones (a length
bias, as real RMs and LLM judges show); the penalty against a reference answer's length removes most of
the preference for length. The weight is in reward units: CourseGPT-zh's 0.5 is for judge scores on a 1-10
scale; this Bradley-Terry RM's margins are about 10, so it is 10 here.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from rewardkit import LengthPenalizedRM, train_reward_model
from rewardkit.data import PreferenceDataset
from rewardkit.eval import evaluate
from rewardkit.records import PreferencePair
from rewardkit.tiny import build_tiny_model

WORDS = ["good", "clear", "useful", "kind", "the", "a", "of", "and", "it", "so"]


def length_biased_pairs(n: int, seed: int) -> PreferenceDataset:
    """Pairs whose chosen answer is simply longer; each record carries a 6-word reference answer."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        short, long = rng.randint(2, 6), rng.randint(9, 14)
        answer = lambda k: " " + " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
        ref = " ".join(rng.choice(WORDS) for _ in range(6))
        pairs.append(PreferencePair("please tell me", answer(long), answer(short), {"reference": ref}))
    return PreferenceDataset(pairs)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--length-penalty", type=float, default=10.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rewardkit-length-") as tmp:
        work = Path(tmp)
        model = build_tiny_model(work / "base", words=WORDS + ["please", "tell", "me"])
        rm = train_reward_model(
            model, length_biased_pairs(200, 0), epochs=2, lr=3e-3, batch_size=16, progress=False
        ).model
        penalised = LengthPenalizedRM(
            rm, length_penalty=args.length_penalty, reference="reference", unit="words"
        )
        test = length_biased_pairs(100, 1)
        report = evaluate({"RM": rm, "RM+LP": penalised}, {"test": test}, id_split=None, length_unit="words")
        result = {name: report.models[name]["splits"]["test"]["prefers_longer"] for name in ("RM", "RM+LP")}
        print(report.to_markdown())
        return result


if __name__ == "__main__":
    main()
