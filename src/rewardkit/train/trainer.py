"""Deprecated (0.2) home of the trainers: pair training is :mod:`rewardkit.train.pairs`, Bradley-Terry
training :mod:`rewardkit.train.bradley_terry`. These names keep working."""

from rewardkit.train.bradley_terry import (  # noqa: F401
    DEFAULT_MAX_LENGTH,
    RewardTrainer,
    train_reward_model,
)
from rewardkit.train.pairs import (  # noqa: F401
    LengthBucketSampler,
    PairCollator,
    PairDataset,
    PairTrainer,
    checkpoint_root,
    load_checkpoint_weights,
    margin_metrics,
    prepare_run_dir,
    run_phase,
    training_arguments,
    use_bf16,
)
