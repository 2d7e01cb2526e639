"""Training in bf16 where the hardware does it fast: the same LoRA reward model trained in float32 and
in bf16 autocast (on a CPU also with its frozen weights stored in bf16 and eager attention), timed, and
scored on held-out pairs in float32.

    python examples/train_bf16.py [--model PATH] [--pairs 400]

Without --model a tiny model is built locally and the built-in synthetic task is used. ``auto_bf16()``
says whether ``rewardkit train --dtype auto`` would train in bf16 on this machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rewardkit import train_reward_model
from rewardkit.synthetic import make_synthetic_preferences
from rewardkit.tiny import build_tiny_model
from rewardkit.train.pairs import auto_bf16


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--pairs", type=int, default=400)
    args = ap.parse_args(argv)
    train, test = make_synthetic_preferences(args.pairs, seed=0), make_synthetic_preferences(200, seed=1)
    result: dict = {"auto_trains_in_bf16_here": auto_bf16()}
    with tempfile.TemporaryDirectory(prefix="rewardkit-bf16-") as tmp:
        model = args.model or build_tiny_model(Path(tmp) / "lm")
        for name, bf16 in (("float32", False), ("bf16", True)):
            t = time.perf_counter()
            rm = train_reward_model(
                model, train, lora_r=8, epochs=2, lr=3e-3, batch_size=16, bf16=bf16, progress=False
            ).model
            result[f"{name}_seconds"] = time.perf_counter() - t
            result[f"{name}_held_out_accuracy"] = rm.score_pairs(test).accuracy()  # scored in float32
    print(result)
    return result


if __name__ == "__main__":
    main()
