"""The kinds of reward model, by name, and the loader that restores any of them.

An explicit table (kind -> ``module:Class``), above ``base`` and the kinds, so ``import rewardkit``
imports no model class and ``base`` imports none at all; a kind's module is imported when a folder of
that kind is loaded. Third-party kinds register through the ``rewardkit.kinds`` entry-point group
(``name = "package.module:Class"``) or :func:`register_kind`.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewardkit.base import DECLARED_KINDS, RewardModel
from rewardkit.errors import ModelError
from rewardkit.io import protect
from rewardkit.manifest import MANIFEST, model_dependencies, reward_model_manifest

#: kind (the manifest's "kind") -> "module:Class"
KINDS: dict[str, str] = {
    "explicit": "rewardkit.models.explicit:BradleyTerryRM",
    "implicit": "rewardkit.models.implicit:DPOImplicitRM",
    "ensemble": "rewardkit.models.ensemble:EnsembleRM",
    "length_penalized": "rewardkit.models.length:LengthPenalizedRM",
    "remote": "rewardkit.models.remote:RemoteRewardModel",
}
_ENTRY_POINTS_READ = False


def register_kind(kind: str, target: str) -> None:
    """Add a kind (``target``: ``"module:Class"`` of a :class:`RewardModel` subclass)."""
    if kind in KINDS and KINDS[kind] != target:
        raise ModelError(f"reward model kind {kind!r} is already registered as {KINDS[kind]}")
    KINDS[kind] = target


def _read_entry_points() -> None:
    global _ENTRY_POINTS_READ
    if _ENTRY_POINTS_READ:
        return
    _ENTRY_POINTS_READ = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="rewardkit.kinds"):
        KINDS.setdefault(ep.name, ep.value)


def kind_class(kind: str, where: str | os.PathLike = "") -> type[RewardModel]:
    """The class of ``kind`` (its module imported now); unknown kinds are a one-line error."""
    if kind not in KINDS:
        _read_entry_points()
    if kind not in KINDS and kind in DECLARED_KINDS:
        warnings.warn(
            f"reward model kind {kind!r} was found by its class definition, as rewardkit 0.2 did; "
            f"register it: rewardkit.register_kind({kind!r}, {DECLARED_KINDS[kind]!r})",
            DeprecationWarning,
            stacklevel=3,
        )
        KINDS[kind] = DECLARED_KINDS[kind]
    if kind not in KINDS:
        raise ModelError(f"{where}: unknown kind {kind!r}; known: {sorted(KINDS)}")
    target = KINDS[kind]
    module, _, name = target.partition(":")
    try:
        cls = importlib.import_module(module)
        for part in name.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError, ValueError) as e:
        raise ModelError(f"kind {kind!r}: cannot import {target!r} ({type(e).__name__}: {e})") from None
    if not (isinstance(cls, type) and issubclass(cls, RewardModel)):
        raise ModelError(f"kind {kind!r}: {target} is not a RewardModel class")
    return cls


def load_reward_model(
    path: str | os.PathLike, *, allow_remote: bool | str | Iterable[str] | None = None, **kwargs: Any
) -> RewardModel:
    """Restore any reward model saved by rewardkit (or an HF sequence-classification checkpoint).

    ``kwargs`` (e.g. ``device``, ``dtype``, ``base_model``) are passed to the kind's loader. Every folder
    the model depends on (its base, reference, members) joins the inputs of the current run
    (:func:`rewardkit.io.protect`), so no output of the run can be written over it.

    A folder never reaches the network on its own: a remote model (also as a member or wrapped model)
    loads only for an endpoint named in ``allow_remote`` (a URL or URLs; ``$REWARDKIT_API_KEY`` is sent
    to them) or with ``allow_remote=True`` (any endpoint, never with the key); None: what an enclosing
    load allowed (nothing at the top).
    """
    from rewardkit.models.remote import remote_allowed

    path = Path(path)
    manifest = reward_model_manifest(path)
    cls = kind_class(manifest["kind"], path / MANIFEST)
    protect(model_dependencies(path, kwargs.get("base_model")))
    with remote_allowed(allow_remote):
        return cls._load(path, manifest, **kwargs)
