"""The ``rewardkit.json`` manifest of a saved reward model, checked field by field, and the folders a
saved model depends on.

A saved reward model is a folder with a manifest (``{"kind": ..., "format": 1, ...}``) beside the
kind's own files. Some fields name other folders: a LoRA model's ``base_model``, a DPO model's
``ref_model``, an ensemble's ``members`` (or a wrapper's ``wrapped``). Those folders are inputs of any
run that loads the model, exactly as the folders named on the command line are
(``rewardkit.models.registry.model_dependencies``): no output may be written over them or inside them, ``--force`` or not.
Paths rewardkit writes are absolute (``base_model``, ``ref_model``) or relative names inside the
folder (``members``); a relative path that leaves the folder (``../victim``) is refused.
Torch-free.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rewardkit.errors import ModelError
from rewardkit.io import write_json

MANIFEST = "rewardkit.json"
FORMAT_VERSION = 1

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
    "ref_model": str,
    "reference_free": bool,
    "members": list,
    "aggregation": str,
    "uncertainty_penalty": (int, float),
    "weights": list,
    "normalize": str,
    "stats": dict,
    "pad_token_id": int,
    "length_penalty": (int, float),
    "unit": str,
    "length_reference": dict,
    "url": str,
    "model": str,
}

_CHOICES = {
    "chat_template": ("auto", "always", "never"),
    "reduction": ("sum", "mean"),
    "normalize": ("none", "zscore"),
    "unit": ("tokens", "chars", "words"),
}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


#: Fields renamed in 0.4 (old -> new): a folder that still carries the old one is refused, never misread
RENAMED_FIELDS = {"lam": "uncertainty_penalty", "alpha": "length_penalty", "reference": "ref_model"}


def _check_values(file: Path, m: dict[str, Any]) -> None:
    """Values a loader could not use (or would use wrongly) are refused with the field's name."""
    for old, new in RENAMED_FIELDS.items():
        if old in m:
            raise ModelError(
                f"{file}: field {old!r} was renamed {new!r} in rewardkit 0.4; rename it in the file"
            )

    def bad(field: str, want: str) -> ModelError:
        return ModelError(f"{file}: field {field!r} must be {want}, got {m[field]!r}")

    for field in ("max_length", "num_heads"):
        if m.get(field) is not None and (isinstance(m[field], bool) or m[field] < 1):
            raise bad(field, "a positive integer")
    if m.get("beta") is not None and not (_finite(m["beta"]) and m["beta"] > 0):
        raise bad("beta", "a positive finite number")
    for field in ("uncertainty_penalty", "length_penalty"):
        if m.get(field) is not None and not (_finite(m[field]) and m[field] >= 0):
            raise bad(field, "a non-negative finite number")
    for field, choices in _CHOICES.items():
        if m.get(field) is not None and m[field] not in choices:
            raise bad(field, "one of " + ", ".join(choices))
    if m.get("members") is not None and not all(isinstance(x, str) and x for x in m["members"]):
        raise bad("members", "a list of folder names")
    if m.get("weights") is not None and not all(_finite(x) and x >= 0 for x in m["weights"]):
        raise bad("weights", "a list of finite non-negative numbers")


def write_manifest(path: str | os.PathLike, manifest: dict[str, Any]) -> None:
    write_json(Path(path) / MANIFEST, manifest)


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of ``path`` (None when it has none), every field checked; one line naming the field
    otherwise."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{file}:{e.lineno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise ModelError(f"{file}: not UTF-8 text") from None
    except RecursionError:
        raise ModelError(f"{file}: JSON nested too deeply") from None
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
        value = manifest.get(field)
        if value is not None and (not isinstance(value, types) or (types is int and isinstance(value, bool))):
            raise ModelError(f"{file}: field {field!r} has the wrong type ({type(value).__name__})")
    _check_values(file, manifest)
    return manifest


def reward_model_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a reward model folder (an HF sequence-classification checkpoint without one
    counts as ``explicit``), checked without importing torch; one-line errors otherwise. Every kind
    rewardkit saves (ensembles and wrappers, which hold no ``config.json`` of their own, included)
    passes."""
    from rewardkit.checkpoints import check_model_folder

    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"{path}: reward model folder not found")
    manifest = read_manifest(path)
    if manifest is not None:
        return manifest
    check_model_folder(path, "reward model", weights=False)
    archs = json.loads((path / "config.json").read_text()).get("architectures") or []
    if not isinstance(archs, list) or not any(str(a).endswith("ForSequenceClassification") for a in archs):
        raise ModelError(f"{path}: no {MANIFEST} and not an HF sequence-classification checkpoint")
    return {"kind": "explicit", "format": FORMAT_VERSION}


def member_folder(folder: Path, name: str, what: str = "ensemble") -> Path:
    """A model named in ``folder``'s manifest (an ensemble's member, a wrapper's model): a relative name
    that stays inside ``folder``."""
    file = folder / MANIFEST
    if Path(name).is_absolute():
        raise ModelError(
            f"{file}: member {name!r} is an absolute path; members are folders inside the {what}"
        )
    resolved = (folder / name).resolve()
    if folder.resolve() not in resolved.parents:
        raise ModelError(f"{file}: member {name!r} resolves outside the {what} folder ({resolved})")
    if not resolved.is_dir():
        raise ModelError(f"{folder}: {what} member {name!r} not found")
    return resolved


def named_folder(folder: Path, field: str, value: str) -> Path:
    """A folder named by a manifest or adapter config field (``base_model``, ``ref_model``): an absolute
    path as rewardkit writes it, or a relative one that stays inside ``folder``."""
    p = Path(value)
    if p.is_absolute():
        return p.resolve()
    resolved = (folder / p).resolve()
    if folder.resolve() not in resolved.parents:
        raise ModelError(f"{folder}: field {field!r} ({value!r}) is a relative path that leaves the folder")
    return resolved


def lora_base(
    folder: str | os.PathLike,
    manifest: dict[str, Any] | None = None,
    override: str | os.PathLike | None = None,
) -> Path | None:
    """The base model a LoRA folder needs, resolved; None when nothing names one. The one precedence
    every loader, the merge and ``rewardkit.models.registry.model_dependencies`` follow:

    1. ``override`` (the caller's ``base_model=`` / ``--base-model``), as given;
    2. the manifest's ``base_model`` (rewardkit's record: absolute, or a relative path inside the folder,
       :func:`named_folder`);
    3. ``adapter_config.json``'s ``base_model_name_or_path`` (HF peft's record, for a folder without
       rewardkit's: relative to the working directory, as peft reads it).

    ``manifest``: the folder's manifest when the caller has read it already (else it is read here)."""
    folder = Path(folder)
    if override:
        return Path(override).resolve()
    if manifest is None:
        manifest = read_manifest(folder) or {}
    if manifest.get("base_model"):
        return named_folder(folder, "base_model", manifest["base_model"])
    config = folder / "adapter_config.json"
    if not config.is_file():
        return None
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{config}: invalid JSON ({e})") from None
    base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    return Path(base).resolve() if isinstance(base, str) and base and "\0" not in base else None
