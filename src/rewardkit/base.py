"""The one interface every reward model implements, and the loader that restores any kind.

A saved reward model is a folder with a ``rewardkit.json`` manifest (``{"kind": ..., "format": 1,
...}``) beside the kind's own files; ``load_reward_model(dir)`` dispatches on ``kind``.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from rewardkit.data import Prompt, as_pairs
from rewardkit.errors import ModelError
from rewardkit.io import write_json
from rewardkit.templating import Texts, completion_text

MANIFEST = "rewardkit.json"
FORMAT_VERSION = 1
TiePolicy = Literal["half", "correct", "wrong"]

_REGISTRY: dict[str, type[RewardModel]] = {}


def pairwise_accuracy(margins: np.ndarray, ties: TiePolicy = "half") -> float:
    """Fraction of pairs with r_chosen > r_rejected; a tie (margin == 0) counts 1/2, 1 or 0.

    WARM counts r+ >= r- as correct (``ties="correct"``), TRL counts ties wrong (``"wrong"``).
    """
    if ties not in ("half", "correct", "wrong"):
        raise ValueError(f"ties must be 'half', 'correct' or 'wrong', got {ties!r}")
    margins = check_finite(margins, "margins")
    if margins.size == 0:
        raise ValueError("accuracy of zero pairs is undefined")
    tie_value = {"half": 0.5, "correct": 1.0, "wrong": 0.0}[ties]
    return float(np.where(margins > 0, 1.0, np.where(margins == 0, tie_value, 0.0)).mean())


def check_finite(values: Any, name: str) -> np.ndarray:
    """``values`` as a float64 array; a NaN or infinite value is refused with its count (a NaN margin
    is neither right nor wrong: counting it either way would bias every metric)."""
    arr = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ModelError(f"{name}: {int(bad.sum())} of {arr.size} values are NaN or infinite")
    return arr


@dataclass(frozen=True)
class PairScores:
    """Rewards of the chosen and rejected responses of n pairs (float32 arrays of shape [n])."""

    chosen: np.ndarray
    rejected: np.ndarray

    @property
    def margins(self) -> np.ndarray:
        return self.chosen - self.rejected

    def accuracy(self, ties: TiePolicy = "half") -> float:
        return pairwise_accuracy(self.margins, ties)

    def __len__(self) -> int:
        return len(self.chosen)


class RewardModel(ABC):
    """r(prompt, response) -> float. Subclasses implement ``score``, ``save`` and ``_load``."""

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is not None:
            _REGISTRY[kind] = cls

    @abstractmethod
    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        """One reward per (prompt, response): float32 array of shape [n]."""

    def score_texts(self, texts: Texts) -> np.ndarray:
        """Rewards of ``texts`` ([n] float32). Models with a tokenizer honour its pair boundaries and the
        TRL reward-call convention; the default scores ``(texts.prompts, texts.responses)``."""
        return np.asarray(self.score(texts.prompts, texts.responses), dtype=np.float32)

    def score_pairs(self, pairs: Any) -> PairScores:
        """Score chosen and rejected of every pair in one call (so the engine batches them together)."""
        pairs = as_pairs(pairs)
        r = self.score_texts(Texts.from_pairs(pairs))
        return PairScores(r[: len(pairs)], r[len(pairs) :])

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[Any], **kwargs) -> list[float]:
        """TRL ``reward_funcs`` signature: plain or conversational prompts/completions -> list of floats.

        Scores what ``GRPOTrainer`` scores for an ``nn.Module`` reward model (see ``rewardkit.templating``).
        """
        n = len(completions)
        columns = {k: v for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) == n}
        metadata = [{k: v[i] for k, v in columns.items()} for i in range(n)] if columns else None
        texts = Texts(
            list(prompts), [completion_text(c) for c in completions], reward_call=True, metadata=metadata
        )
        return [float(x) for x in self.score_texts(texts)]

    @abstractmethod
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to a folder that ``rewardkit.load_reward_model`` restores."""

    @classmethod
    @abstractmethod
    def _load(cls, path: Path, manifest: dict[str, Any], **kwargs) -> RewardModel:
        """Restore from a folder whose manifest has this class's ``kind``."""

    def _manifest(self, **fields: Any) -> dict[str, Any]:
        from rewardkit import __version__

        return {"kind": self.kind, "format": FORMAT_VERSION, "rewardkit_version": __version__, **fields}


def write_manifest(path: str | os.PathLike, manifest: dict[str, Any]) -> None:
    write_json(Path(path) / MANIFEST, manifest)


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    file = Path(path) / MANIFEST
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{file}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise ModelError(f"{file}: not UTF-8 text") from None
    if not isinstance(manifest, dict):
        raise ModelError(f"{file}: expected a JSON object")
    if not isinstance(manifest.get("kind"), str):
        raise ModelError(f"{file}: field 'kind' missing or not a string")
    fmt = manifest.get("format", FORMAT_VERSION)
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise ModelError(f"{file}: field 'format' must be an integer, got {fmt!r}")
    if fmt > FORMAT_VERSION:
        raise ModelError(f"{file}: format {fmt} is newer than this rewardkit understands")
    for field, types in MANIFEST_FIELDS.items():
        if field in manifest and manifest[field] is not None and not isinstance(manifest[field], types):
            raise ModelError(f"{file}: field {field!r} has the wrong type ({type(manifest[field]).__name__})")
    return manifest


#: Types of the manifest fields a loader reads (None is allowed for each).
MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "max_length": int,
    "num_heads": int,
    "lora": bool,
    "base_model": str,
    "base_fingerprint": str,
    "chat_template": str,
    "beta": (int, float),
    "reduction": str,
    "reference": str,
    "reference_free": bool,
    "members": list,
    "aggregation": str,
    "lam": (int, float),
    "weights": list,
    "normalize": str,
    "stats": dict,
    "pad_token_id": int,
    "alpha": (int, float),
    "unit": str,
    "length_reference": dict,
    "url": str,
    "model": str,
}


def reward_model_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a reward model folder (an HF sequence-classification checkpoint without one
    counts as ``explicit``), checked without importing torch; one-line errors otherwise. Every kind
    rewardkit saves (ensembles and wrappers, which hold no ``config.json`` of their own, included)
    passes."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: reward model folder not found")
    manifest = read_manifest(path)
    if manifest is not None:
        return manifest
    from rewardkit.models.common import check_model_folder

    check_model_folder(path, "reward model", weights=False)
    archs = json.loads((path / "config.json").read_text()).get("architectures") or []
    if not isinstance(archs, list) or not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise ModelError(f"{path}: no {MANIFEST} and not an HF sequence-classification checkpoint")
    return {"kind": "explicit", "format": FORMAT_VERSION}


def load_reward_model(path: str | os.PathLike, **kwargs: Any) -> RewardModel:
    """Restore any reward model saved by rewardkit (or an HF sequence-classification checkpoint).

    ``kwargs`` (e.g. ``device``, ``dtype``) are passed to the kind's loader.
    """
    from rewardkit.models import register_kinds

    register_kinds()

    path = Path(path)
    manifest = reward_model_manifest(path)
    kind = manifest["kind"]
    if kind not in _REGISTRY:
        raise ModelError(f"{path / MANIFEST}: unknown kind {kind!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[kind]._load(path, manifest, **kwargs)
