"""Small helpers shared across the package (one home, so nothing is written twice)."""

from __future__ import annotations

import platform
from typing import Any


def unwrap_peft(model: Any) -> Any:
    """The model a peft wrapper adapts (the model itself when it is not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def versions(**extra: str) -> dict[str, str]:
    """Versions of rewardkit and the libraries its numbers depend on, for provenance and reports (read
    from package metadata: nothing is imported, so e.g. ``merge`` never loads transformers)."""
    from importlib.metadata import PackageNotFoundError, version

    from rewardkit import __version__

    out = {"rewardkit": __version__}
    for name in ("torch", "transformers", "peft", "safetensors"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return {**out, "python": platform.python_version(), **extra}
