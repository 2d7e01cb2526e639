"""Small helpers shared across the package (one home, so nothing is written twice)."""

from __future__ import annotations

import importlib
import math
import platform
import sys
from collections.abc import Callable
from typing import Any

#: Files that make up a tokenizer (and its chat template) in a model folder.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
)


def parse_size(size: str | int, what: str = "size") -> int:
    """'2GB' / '500MB' / '1.5GiB' / bytes -> a positive number of bytes; anything else is an error
    naming ``what``."""
    from rewardkit.errors import RewardkitError

    if isinstance(size, int) and not isinstance(size, bool):
        n = size
    else:
        s = str(size).strip().upper().replace("IB", "B")
        mult = 1
        for unit, m in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10), ("B", 1)):
            if s.endswith(unit):
                s, mult = s[: -len(unit)].strip(), m
                break
        try:
            value = float(s)
        except ValueError:
            raise RewardkitError(f"{what} {size!r} is not a size like 2GB or 500MB") from None
        if not math.isfinite(value):
            raise RewardkitError(f"{what} {size!r} is not a size like 2GB or 500MB")
        n = int(value * mult)
    if n <= 0:
        raise RewardkitError(f"{what} must be positive, got {size!r}")
    return n


def scaled_weights(weights: Any, n: int, per: str = "member") -> list[float]:
    """``n`` relative weights, checked (finite, non-negative, not all zero) and, where their scale would
    overflow or underflow float32 arithmetic (a sum of 1e308s is infinite; 1e-50 is 0 in float32),
    divided by the largest, which changes nothing they mean: ``1e308,1e308`` is ``1,1``. Weights of an
    ordinary scale are returned as given (a merge then equals mergekit's bit for bit)."""
    from rewardkit.errors import RewardkitError

    try:
        w = [float(x) for x in weights]
    except (TypeError, ValueError):
        raise RewardkitError(f"weights must be numbers, got {weights!r}") from None
    if len(w) != n or not all(math.isfinite(x) and x >= 0 for x in w) or not any(w):
        raise RewardkitError(
            f"weights must be {n} finite non-negative numbers, not all zero (one per {per}); got {w}"
        )
    top = max(w)
    if not 2.0**-60 <= top <= 2.0**60:
        w = [x / top for x in w]
    return w


def first_error(e: Any) -> tuple[str, str]:
    """(field path such as ``a.b`` or "" for a check across fields, message) of a pydantic
    ``ValidationError``'s first error: the one line every edge (CLI, config files, HTTP) reports."""
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return loc, str(err.get("msg", "")).removeprefix("Value error, ")


def config_error(e: Any, what: str, config_file: Any = None) -> Exception:
    """A pydantic ``ValidationError`` of a config as one line naming ``what``, the first bad field (its
    limit or rule, in pydantic's words) and the config file the fields came from."""
    from rewardkit.errors import RewardkitError

    loc, msg = first_error(e)
    src = f" (config file {config_file})" if config_file is not None else ""
    if not loc:  # a check across fields
        return RewardkitError(f"{what}: {msg}{src}")
    return RewardkitError(f"{what} field {loc!r}: {msg}{src}")


def is_url(text: Any) -> bool:
    """An http(s) URL (a served model) rather than a folder."""
    return isinstance(text, str) and text.startswith(("http://", "https://"))


def unwrap_peft(model: Any) -> Any:
    """The model a peft wrapper adapts (the model itself when it is not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def versions(**extra: str) -> dict[str, str]:
    """Versions of rewardkit and the libraries its numbers depend on, for provenance and reports (read
    from package metadata: nothing is imported, so e.g. ``merge`` never loads transformers)."""
    from importlib.metadata import PackageNotFoundError, version

    from rewardkit.version import __version__

    out = {"rewardkit": __version__}
    for name in ("torch", "transformers", "peft", "safetensors"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return {**out, "python": platform.python_version(), **extra}


def show_progress(progress: bool | None) -> bool:
    """Progress bars: as asked, or by default only when stderr is a terminal (never in logs and CI)."""
    return sys.stderr.isatty() if progress is None else progress


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) for ``exports`` (public name -> module
    that defines it): each name is imported on first use and then kept in the package, so importing the
    package imports none of them."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # resolved once
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
