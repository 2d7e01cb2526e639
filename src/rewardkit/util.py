"""Small helpers shared across the package (one home, so nothing is written twice)."""

from __future__ import annotations

import platform
from typing import Any


def unwrap_peft(model: Any) -> Any:
    """The model a peft wrapper adapts (the model itself when it is not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def versions(**extra: str) -> dict[str, str]:
    """Versions of rewardkit and the libraries its numbers depend on, for provenance and reports."""
    import peft
    import safetensors
    import torch
    import transformers

    from rewardkit import __version__

    return {
        "rewardkit": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
        **extra,
    }
