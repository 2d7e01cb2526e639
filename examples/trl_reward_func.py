"""Use any rewardkit reward model as a TRL ``reward_funcs`` callable (GRPO / online RL).

    from trl import GRPOTrainer
    trainer = GRPOTrainer(model=policy, reward_funcs=[rm], ...)

TRL calls ``rm(prompts=..., completions=..., **columns)`` with plain or conversational inputs and
expects a list of floats; this script makes the same call without TRL installed.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rewardkit import BradleyTerryRM, load_reward_model
from rewardkit.tiny import build_tiny_model


def main(argv=None) -> list[float]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rm", default=None, help="saved reward model (default: an untrained tiny one)")
    args = ap.parse_args(argv)
    if args.rm:
        rm = load_reward_model(args.rm)
    else:
        with tempfile.TemporaryDirectory(prefix="rewardkit-trl-") as tmp:  # weights are read into memory
            rm = BradleyTerryRM.from_pretrained(build_tiny_model(Path(tmp) / "lm"))
    prompts = [[{"role": "user", "content": "tell me about pasta"}]] * 2
    completions = [
        [{"role": "assistant", "content": "great helpful recipe"}],
        [{"role": "assistant", "content": "wrong rude"}],
    ]
    rewards = rm(prompts=prompts, completions=completions, trainer_state=None)
    print("rewards:", rewards)
    return rewards


if __name__ == "__main__":
    main()
