"""Prediction ensembles of reward models (Coste et al.; Eisenstein et al.).

Aggregations are pure functions over a [members, n] array of (optionally normalised) member rewards.

Why normalise: Bradley-Terry rewards are defined only up to a prompt-dependent shift (and each member
has its own scale), so the median, min or std across un-centred members mixes arbitrary offsets.
``normalize="zscore"`` standardises each member with the mean and std of its rewards on a calibration
set of (prompt, response) pairs; the statistics are stored with the ensemble. Training members with
the centring penalty (``center_coef``) attacks the same problem at the source.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.base import Loader, RewardModel
from rewardkit.errors import ModelError, RewardkitError
from rewardkit.io import atomic_dir, check_output, copy_model_tree
from rewardkit.manifest import member_folder, read_manifest, write_manifest
from rewardkit.records import Prompt
from rewardkit.templating import Texts
from rewardkit.util import TOKENIZER_FILES, scaled_weights


def agg_mean(
    s: np.ndarray, uncertainty_penalty: float = 1.0, weights: np.ndarray | None = None
) -> np.ndarray:
    return s.mean(axis=0)


def agg_median(
    s: np.ndarray, uncertainty_penalty: float = 1.0, weights: np.ndarray | None = None
) -> np.ndarray:
    return np.median(s, axis=0)


def agg_min(s: np.ndarray, uncertainty_penalty: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    """Worst-case optimisation (WCO, Coste et al.)."""
    return s.min(axis=0)


def agg_mean_minus_std(
    s: np.ndarray, uncertainty_penalty: float = 1.0, weights: np.ndarray | None = None
) -> np.ndarray:
    """mean - uncertainty_penalty * std across members (population std, ddof=0; Eisenstein et al.)."""
    return s.mean(axis=0) - uncertainty_penalty * s.std(axis=0)


def agg_mean_minus_var(
    s: np.ndarray, uncertainty_penalty: float = 1.0, weights: np.ndarray | None = None
) -> np.ndarray:
    """Uncertainty-weighted optimisation (UWO, Coste et al.): mean - uncertainty_penalty * variance (ddof=0)."""
    return s.mean(axis=0) - uncertainty_penalty * s.var(axis=0)


def agg_weighted(
    s: np.ndarray, uncertainty_penalty: float = 1.0, weights: np.ndarray | None = None
) -> np.ndarray:
    """Fixed member weights, normalised to sum 1."""
    if weights is None:
        raise ValueError("aggregation 'weighted' needs weights")
    try:
        w = np.asarray(scaled_weights(weights, s.shape[0], "reward row: per model, head and LoRA adapter"))
    except RewardkitError as e:
        raise ValueError(str(e)) from None
    return (w / w.sum()) @ s


AGGREGATIONS: dict[str, Callable[..., np.ndarray]] = {
    "mean": agg_mean,
    "median": agg_median,
    "min": agg_min,
    "mean_minus_std": agg_mean_minus_std,
    "mean_minus_var": agg_mean_minus_var,
    "weighted": agg_weighted,
}


def check_stats(stats: Any, n_rows: int) -> None:
    """z-score statistics: ``{"mean": [M], "std": [M]}`` of finite numbers, std > 0."""
    ok = isinstance(stats, dict) and all(
        isinstance(stats.get(k), list) and len(stats[k]) == n_rows for k in ("mean", "std")
    )
    if not ok:
        raise ModelError(f"z-score statistics must hold 'mean' and 'std' lists of {n_rows} numbers")
    values = np.asarray(stats["mean"] + stats["std"], dtype=np.float64)
    if not np.isfinite(values).all() or min(stats["std"]) <= 0:
        raise ModelError("z-score statistics must be finite with positive std")


def fit_zscore(raw: np.ndarray) -> dict[str, list[float]]:
    """Per-row mean and std (ddof=0) of [M, n] calibration rewards: ``{"mean": [M], "std": [M]}``;
    a row with non-finite or constant rewards is refused (it cannot be standardised)."""
    raw = np.asarray(raw, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(raw).all(axis=1))
    if bad.size:
        raise ModelError(
            f"ensemble member(s) {bad.tolist()} give non-finite rewards on the calibration set "
            f"({int((~np.isfinite(raw[bad])).sum())} values)"
        )
    std = raw.std(axis=1)
    if np.any(std == 0):
        raise ModelError(
            f"member(s) {np.flatnonzero(std == 0).tolist()} give constant rewards on the calibration set"
        )
    return {"mean": raw.mean(axis=1).tolist(), "std": std.tolist()}


def apply_zscore(raw: np.ndarray, stats: dict[str, list[float]]) -> np.ndarray:
    """[M, n] rewards standardised row by row with ``stats`` (:func:`fit_zscore`)."""
    mean, std = np.asarray(stats["mean"])[:, None], np.asarray(stats["std"])[:, None]
    return (np.asarray(raw, dtype=np.float64) - mean) / std


@dataclass(frozen=True)
class EnsembleScores:
    """``aggregate`` [n], ``members`` [M, n] (after normalisation), ``std`` [n] across members."""

    aggregate: np.ndarray
    members: np.ndarray
    std: np.ndarray


def tokenizer_digest(folder: str | os.PathLike) -> str:
    """sha256 over a model folder's tokenizer files: equal digests tokenise identically."""
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        f = Path(folder) / name
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


class EnsembleRM(RewardModel):
    """An ensemble of reward models of any kinds (explicit, implicit, merged, mixed).

    Its members are reward *rows*: one per model, per head of a multi-head model and per LoRA adapter
    of a shared-base model, in the order the user gave them; ``weights`` and z-score statistics follow
    that order.
    """

    kind = "ensemble"

    def __init__(
        self,
        members: Sequence[RewardModel],
        aggregation: str = "mean",
        uncertainty_penalty: float = 1.0,
        weights: Sequence[float] | None = None,
        normalize: str = "none",
        stats: dict[str, list[float]] | None = None,
        row_order: Sequence[int] | None = None,
    ):
        n_rows = sum(m.num_members for m in members)
        if n_rows < 2:
            raise ModelError("an ensemble needs at least 2 members (models, heads or LoRA adapters)")
        if aggregation not in AGGREGATIONS:
            raise ModelError(f"unknown aggregation {aggregation!r}; use one of {sorted(AGGREGATIONS)}")
        if normalize not in ("none", "zscore"):
            raise ModelError(f"normalize must be 'none' or 'zscore', got {normalize!r}")
        if not np.isfinite(uncertainty_penalty) or uncertainty_penalty < 0:
            raise ModelError(
                f"uncertainty_penalty must be a non-negative finite number, got {uncertainty_penalty}"
            )
        if weights is not None and aggregation != "weighted":
            raise ModelError(f"weights are used by aggregation 'weighted' only, not {aggregation!r}")
        if aggregation == "weighted":
            if weights is None:
                raise ModelError("aggregation 'weighted' needs weights")
            try:
                agg_weighted(np.zeros((n_rows, 1)), weights=np.asarray(weights, dtype=np.float64))
            except (ValueError, TypeError) as e:
                raise ModelError(str(e)) from None
        if row_order is not None and sorted(row_order) != list(range(n_rows)):
            raise ModelError(f"row_order must be a permutation of range({n_rows})")
        if stats is not None:
            check_stats(stats, n_rows)
        self.members = list(members)
        self.aggregation, self.uncertainty_penalty, self.normalize = (
            aggregation,
            float(uncertainty_penalty),
            normalize,
        )
        self.weights = None if weights is None else [float(w) for w in weights]
        self.stats = stats
        self.row_order = list(row_order) if row_order is not None else None
        self.sources: list[str] | None = None  # member folders in the user's order, when loaded from disk
        self.last_tokenizations = (
            0  # distinct encodings of the last call (members sharing a tokenizer share one)
        )

    @property
    def num_members(self) -> int:
        return sum(m.num_members for m in self.members)

    def fit_normalization(
        self, prompts: Sequence[Prompt], responses: Sequence[str]
    ) -> dict[str, list[float]]:
        """Fit per-member mean / std on a calibration set (never on the data being scored)."""
        self.stats = fit_zscore(self.raw_rows(Texts.of(prompts, responses)))
        return self.stats

    def raw_rows(self, texts: Texts) -> np.ndarray:
        """[M, n] rewards of every member before normalisation, in the members' (user's) order.

        Multi-head models and LoRA members sharing a base contribute several rows from one model
        (``member_rows``): tokenised once, one base in memory, one backbone pass per adapter / per batch.
        """
        rows = []
        encoded: dict[str, list] = {}  # one tokenisation per distinct tokenizer / convention / max_length
        for i, m in enumerate(self.members):
            try:
                key = m.encoding_key
                if key is None:
                    rows.extend(m.member_rows(texts))
                    continue
                if key not in encoded:
                    encoded[key] = texts.encode(m.formatter)
                rows.extend(m.member_rows(texts, items=encoded[key]))
            except ModelError as e:
                raise ModelError(f"ensemble member #{i}: {e}") from None
        self.last_tokenizations = len(encoded)
        out = np.stack(rows).astype(np.float64)
        return out[self.row_order] if self.row_order is not None else out

    def _normalized(self, raw: np.ndarray) -> np.ndarray:
        if self.normalize == "none":
            return raw
        if self.stats is None:
            raise ModelError(
                "normalize='zscore' needs statistics: call fit_normalization(prompts, responses) "
                "on a calibration set first"
            )
        return apply_zscore(raw, self.stats)

    def uncertainty(self, texts: Texts) -> EnsembleScores:
        s = self._normalized(self.raw_rows(texts))
        w = None if self.weights is None else np.asarray(self.weights)
        agg = AGGREGATIONS[self.aggregation](s, self.uncertainty_penalty, w)
        return EnsembleScores(agg.astype(np.float32), s.astype(np.float32), s.std(axis=0).astype(np.float32))

    def score_with_uncertainty(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> EnsembleScores:
        return self.uncertainty(Texts.of(prompts, responses))

    def score_texts(self, texts: Texts) -> np.ndarray:
        return self.uncertainty(texts).aggregate

    def member_rows(self, texts: Texts, items: Sequence[Any] | None = None) -> np.ndarray:
        """[num_members, n]: as a member of another ensemble, this one contributes its members' rows
        (after its own normalisation), as a multi-head model contributes its heads."""
        return self._normalized(self.raw_rows(texts)).astype(np.float32)

    def score_columns(self, texts: Texts) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The aggregate, with each member's reward (``members``: [n, M]) and their ``std`` ([n])."""
        u = self.uncertainty(texts)
        return u.aggregate, {"members": u.members.T, "std": u.std}

    def settings(self) -> dict[str, Any]:
        """How the members' rows become one reward (what the manifest records beside the members)."""
        keys = ("aggregation", "uncertainty_penalty", "weights", "normalize", "stats")
        return {k: getattr(self, k) for k in keys}

    def describe(self) -> dict[str, Any]:
        info = {**super().describe(), **self.settings(), "sources": self.sources}
        return {**info, "stats": self.stats is not None, "member_kinds": [m.kind for m in self.members]}

    def named_inputs(self) -> list[Path]:
        out = [Path(p) for p in self.sources or ()]
        for m in self.members:
            out += m.named_inputs()
        return out

    def save(self, path: str | os.PathLike, *, force: bool = False) -> None:
        """Members are embedded as ``member_0``, ``member_1``... beside the manifest (copied from their
        source folders when the ensemble was built from saved models)."""
        if self.row_order is not None and self.sources is None:
            raise ModelError("an ensemble with reordered members saves from its source folders")
        check_output(path, self.named_inputs(), "ensemble output")
        with atomic_dir(path, force=force) as tmp:
            names = []
            if self.sources is not None:
                skip = ("checkpoints", ".*.tmp-*", ".*.old-*")  # the model's own files; no link followed out
                for i, src in enumerate(self.sources):
                    copy_model_tree(src, Path(tmp) / f"member_{i}", skip)
                    names.append(f"member_{i}")
            else:
                for i, m in enumerate(self.members):
                    if getattr(m, "adapter_names", None):
                        raise ModelError(
                            "an ensemble with shared-base LoRA members saves from its source folders"
                        )
                    m.save(Path(tmp) / f"member_{i}")
                    names.append(f"member_{i}")
            write_manifest(
                tmp,
                self._manifest(members=names, **self.settings()),
            )

    @classmethod
    def from_folders(
        cls,
        paths: Sequence[str | os.PathLike],
        load: Loader,
        *,
        share_base: bool = True,
        **kwargs: Any,
    ) -> EnsembleRM:
        """Saved reward models as an ensemble, members in the order given, each restored by ``load``
        (``rewardkit.load_ensemble`` passes the registry's loader). With ``share_base``, explicit LoRA
        members trained on the same base that tokenise identically (tokenizer, convention, max_length)
        are loaded as adapters of one model (one copy of the base weights)."""
        from rewardkit.io import check_distinct

        check_distinct(paths, "ensemble member")
        paths = [Path(p) for p in paths]
        for p in paths:
            if not p.is_dir():
                raise ModelError(f"{p}: reward model folder not found")
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(paths):
            man = read_manifest(p) or {}
            shareable = share_base and man.get("kind") == "explicit" and man.get("lora")
            key = (
                (
                    "lora",
                    man.get("base_model"),
                    man.get("num_heads", 1),
                    man.get("max_length"),
                    man.get("chat_template", "auto"),
                    tokenizer_digest(p),
                )
                if shareable
                else ("single", i)
            )
            groups.setdefault(key, []).append(i)
        members, grouped = [], []  # grouped: path indices in the order their rows come out
        rows: dict[int, int] = {}  # reward rows each path gives, as loaded (heads, nested members...)
        for idx in groups.values():
            rm = load(paths[idx[0]])
            if len(idx) > 1:
                rm.add_lora_members([paths[i] for i in idx[1:]])
            members.append(rm)
            grouped.extend(idx)
            for i in idx:  # a shared-base group: every adapter gives the same number of heads
                rows[i] = rm.num_members // len(idx)
        start, row = {}, 0  # first reward row of each path in the grouped order
        for i in grouped:
            start[i] = row
            row += rows[i]
        order = [start[i] + h for i in range(len(paths)) for h in range(rows[i])]
        ens = cls(members, row_order=None if order == sorted(order) else order, **kwargs)
        ens.sources = [str(p.resolve()) for p in paths]
        return ens

    @classmethod
    def _load(
        cls, path: Path, manifest: dict[str, Any], *, load_member: Loader | None = None, **kwargs: Any
    ) -> EnsembleRM:
        if load_member is None:
            raise ModelError(f"{path}: an ensemble loads through rewardkit.load_reward_model")
        dirs = [member_folder(path, rel) for rel in manifest.get("members") or ()]
        return cls.from_folders(
            dirs,
            load_member,
            aggregation=manifest["aggregation"],
            uncertainty_penalty=manifest.get("uncertainty_penalty", 1.0),
            weights=manifest.get("weights"),
            normalize=manifest.get("normalize", "none"),
            stats=manifest.get("stats"),
        )
