"""The kinds of reward model, by name, and the loader that restores any of them.

An explicit table (kind -> ``module:Class``), above ``base`` and the kinds, so ``import rewardkit``
imports no model class and ``base`` imports none at all; a kind's module is imported when a folder of
that kind is loaded. Third-party kinds register through the ``rewardkit.kinds`` entry-point group
(``name = "package.module:Class"``) or :func:`register_kind`.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.base import RewardModel
from rewardkit.errors import ModelError
from rewardkit.io import protect
from rewardkit.manifest import MANIFEST, model_dependencies, reward_model_manifest

if TYPE_CHECKING:
    from rewardkit.models.ensemble import EnsembleRM

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
        return cls._load(path, manifest, load_member=functools.partial(load_reward_model, **kwargs), **kwargs)


def load_ensemble(
    paths: Sequence[str | os.PathLike],
    *,
    share_base: bool = True,
    load_kwargs: dict[str, Any] | None = None,
    **settings: Any,
) -> EnsembleRM:
    """Saved reward models as one :class:`~rewardkit.models.ensemble.EnsembleRM`, members in the order
    given, each restored by :func:`load_reward_model` with ``load_kwargs`` (e.g. ``base_model``,
    ``device``). ``settings``: the ensemble's (``aggregation``, ``uncertainty_penalty``, ``weights``, ``normalize``...).
    With ``share_base``, explicit LoRA members trained on the same base that tokenise identically are
    loaded as adapters of one model (one copy of the base weights)."""
    from rewardkit.models.ensemble import EnsembleRM

    load = functools.partial(load_reward_model, **(load_kwargs or {}))
    return EnsembleRM.from_folders(paths, load, share_base=share_base, **settings)
