"""Deprecated home of the loading helpers: they live in :mod:`rewardkit.checkpoints` (a neutral module
below the model kinds, so ``base`` and ``merge`` need not import ``models``). Kept so 0.2 imports work."""

from rewardkit.checkpoints import *  # noqa: F403
from rewardkit.checkpoints import (  # noqa: F401
    FINGERPRINT_SAMPLE,
    base_fingerprint,
    cast_like_loaded,
    check_base,
    check_finite_weights,
    check_model_folder,
    hf_load,
    load_tokenizer,
    model_context,
    quiet_transformers,
    resolve_device,
    resolve_dtype,
)
