"""Upper bounds of the counts that size a run's memory or time (docs/cli.md "Guarantees"): the one table
that the command-line flags (click ranges, ``rewardkit.cli.options.bounded``) and the config fields
behind them (training configs, bench settings, whether from flags, a ``--config`` YAML file or Python)
check against. A request above one is refused before any work, naming the limit."""

from __future__ import annotations

LIMITS: dict[str, int] = {
    "n_boot": 100_000,  # bootstrap resamples (each one a pass over every pair)
    "batch_size": 65_536,  # pairs per device per training step (and gradient-accumulation steps)
    "max_batch_size": 65_536,  # sequences per scoring / generation batch
    "max_tokens": 2**24,  # padded tokens per scoring batch
    "max_length": 2**20,  # tokens per sequence (new tokens per sampled completion too)
    "lora_r": 65_536,  # and at most the model's hidden size (rewardkit.cli.options.check_lora_rank)
    "steps": 10_000_000,  # optimizer steps: save_steps, elastic_reset_every, RL steps and their intervals
    "pairs": 10_000_000,  # pairs, prompts or examples a benchmark draws
    "k": 4_096,  # candidates per prompt (best-of-N's N, GRPO's generations, samples per prompt)
    "members": 64,  # models a benchmark trains per setup (and reward heads on one backbone)
    "epochs": 10_000,  # passes over the training data (a float field: at most this many)
}
