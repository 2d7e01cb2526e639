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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.base import RewardModel
from rewardkit.errors import ModelError
from rewardkit.io import protect
from rewardkit.manifest import (
    MANIFEST,
    lora_base,
    member_folder,
    named_folder,
    read_manifest,
    reward_model_manifest,
)

if TYPE_CHECKING:
    from rewardkit.models.ensemble import EnsembleRM

@dataclass(frozen=True)
class KindSpec:
    """A kind as the registry knows it without importing it (a kind's module imports torch): where its
    class is (``"module:Class"``) and the manifest fields naming the folders a load of it reads, which
    :func:`model_dependencies` follows. Every kind may also need a LoRA base
    (:func:`rewardkit.manifest.lora_base`)."""

    target: str
    #: fields naming a folder loaded as it is (a DPO model's ``ref_model``)
    folders: tuple[str, ...] = ()
    #: fields naming saved reward models inside the folder (a name or a list of names), followed in turn
    models: tuple[str, ...] = ()


#: kind (the manifest's "kind") -> its :class:`KindSpec`
KINDS: dict[str, KindSpec] = {
    "explicit": KindSpec("rewardkit.models.explicit:BradleyTerryRM"),
    "implicit": KindSpec("rewardkit.models.implicit:DPOImplicitRM", folders=("ref_model",)),
    "ensemble": KindSpec("rewardkit.models.ensemble:EnsembleRM", models=("members",)),
    "length_penalized": KindSpec("rewardkit.models.length:LengthPenalizedRM", models=("model",)),
    "remote": KindSpec("rewardkit.models.remote:RemoteRewardModel"),
}
_ENTRY_POINTS_READ = False
#: the fields followed for a kind that declares none (a plugin from an entry point, an unknown kind): the
#: conventional ones, so a plugin ensemble's members and a plugin DPO model's reference stay protected
CONVENTIONAL = KindSpec("", folders=("ref_model",), models=("members",))


def register_kind(
    kind: str, target: str, *, folders: Sequence[str] = (), models: Sequence[str] = ()
) -> None:
    """Add a kind (``target``: ``"module:Class"`` of a :class:`RewardModel` subclass; ``folders`` /
    ``models``: its manifest fields naming folders a load reads, :class:`KindSpec`)."""
    if kind in KINDS and KINDS[kind].target != target:
        raise ModelError(f"reward model kind {kind!r} is already registered as {KINDS[kind].target}")
    KINDS[kind] = KindSpec(target, tuple(folders), tuple(models))


def _read_entry_points() -> None:
    global _ENTRY_POINTS_READ
    if _ENTRY_POINTS_READ:
        return
    _ENTRY_POINTS_READ = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="rewardkit.kinds"):
        KINDS.setdefault(ep.name, KindSpec(ep.value, CONVENTIONAL.folders, CONVENTIONAL.models))


def kind_class(kind: str, where: str | os.PathLike = "") -> type[RewardModel]:
    """The class of ``kind`` (its module imported now); unknown kinds are a one-line error."""
    if kind not in KINDS:
        _read_entry_points()
    if kind not in KINDS:
        raise ModelError(f"{where}: unknown kind {kind!r}; known: {sorted(KINDS)}")
    target = KINDS[kind].target
    module, _, name = target.partition(":")
    try:
        cls = importlib.import_module(module)
        for part in name.split("."):
            cls = getattr(cls, part)
    except Exception as e:  # a plugin's module may raise anything on import
        msg = " ".join(str(e).split())[:200]
        at = f"{where}: " if where else ""
        raise ModelError(f"{at}kind {kind!r}: cannot import {target!r} ({type(e).__name__}: {msg})") from None
    if not (isinstance(cls, type) and issubclass(cls, RewardModel)):
        raise ModelError(f"kind {kind!r}: {target} is not a RewardModel class")
    return cls


def model_dependencies(path: str | os.PathLike, base_model: str | os.PathLike | None = None) -> list[Path]:
    """Every folder loading ``path`` reads, resolved (symlinks and ``..``), asked of each folder's kind
    (:class:`KindSpec`, no kind imported): the folder itself, a LoRA base (``base_model`` overrides the
    recorded one, :func:`rewardkit.manifest.lora_base`), the folders its kind names (a DPO model's
    reference) and the models inside it (an ensemble's members, a wrapper's model), recursively. Paths
    that do not exist are listed too (the loader refuses them)."""
    out: list[Path] = []
    todo = [Path(path)]
    while todo:
        folder = todo.pop()
        resolved = folder.resolve()
        if resolved in out:
            continue
        out.append(resolved)
        if not folder.is_dir():
            continue
        manifest = read_manifest(folder) or {}
        base = lora_base(folder, manifest, base_model)
        if base is not None:
            out.append(base)
        kind = manifest.get("kind")
        if isinstance(kind, str) and kind not in KINDS:
            _read_entry_points()
        spec = KINDS.get(kind, CONVENTIONAL) if isinstance(kind, str) else CONVENTIONAL
        for field in spec.folders:
            if isinstance(manifest.get(field), str):
                out.append(named_folder(folder, field, manifest[field]))
        for field in spec.models:
            names = manifest.get(field)
            what = "wrapper" if isinstance(names, str) else "ensemble"
            names = [names] if isinstance(names, str) else names if isinstance(names, list) else []
            todo.extend(member_folder(folder, n, what) for n in names)
    return list(dict.fromkeys(out))


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
