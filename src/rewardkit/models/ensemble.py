"""Prediction ensembles of reward models (Coste et al.; Eisenstein et al.).

Aggregations are pure functions over a [members, n] array of (optionally normalised) member rewards.

Why normalise: Bradley-Terry rewards are defined only up to a prompt-dependent shift (and each member
has its own scale), so the median, min or std across un-centred members mixes arbitrary offsets.
``normalize="zscore"`` standardises each member with the mean and std of its rewards on a calibration
set of (prompt, response) pairs; the statistics are stored with the ensemble. Training members with
the centring penalty (``center_coef``) attacks the same problem at the source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.base import RewardModel, load_reward_model, write_manifest
from rewardkit.data import Prompt
from rewardkit.errors import ModelError
from rewardkit.io import atomic_dir


def agg_mean(s: np.ndarray, lam: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    return s.mean(axis=0)


def agg_median(s: np.ndarray, lam: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    return np.median(s, axis=0)


def agg_min(s: np.ndarray, lam: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    """Worst-case optimisation (WCO, Coste et al.)."""
    return s.min(axis=0)


def agg_mean_minus_std(s: np.ndarray, lam: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    """mean - lam * std across members (population std, ddof=0; Eisenstein et al.)."""
    return s.mean(axis=0) - lam * s.std(axis=0)


def agg_mean_minus_var(s: np.ndarray, lam: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    """Uncertainty-weighted optimisation (UWO, Coste et al.): mean - lam * variance (ddof=0)."""
    return s.mean(axis=0) - lam * s.var(axis=0)


def agg_weighted(s: np.ndarray, lam: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    """Fixed member weights, normalised to sum 1."""
    if weights is None:
        raise ValueError("aggregation 'weighted' needs weights")
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (s.shape[0],) or np.any(w < 0) or w.sum() == 0:
        raise ValueError(f"weights must be {s.shape[0]} non-negative numbers, not all zero")
    return (w / w.sum()) @ s


AGGREGATIONS: dict[str, Callable[..., np.ndarray]] = {
    "mean": agg_mean,
    "median": agg_median,
    "min": agg_min,
    "mean_minus_std": agg_mean_minus_std,
    "mean_minus_var": agg_mean_minus_var,
    "weighted": agg_weighted,
}


@dataclass(frozen=True)
class EnsembleScores:
    """``aggregate`` [n], ``members`` [M, n] (after normalisation), ``std`` [n] across members."""

    aggregate: np.ndarray
    members: np.ndarray
    std: np.ndarray


class EnsembleRM(RewardModel):
    """An ensemble of reward models of any kinds (explicit, implicit, merged, mixed)."""

    kind = "ensemble"

    def __init__(
        self,
        members: Sequence[RewardModel],
        aggregation: str = "mean",
        lam: float = 1.0,
        weights: Sequence[float] | None = None,
        normalize: str = "none",
        stats: dict[str, list[float]] | None = None,
    ):
        if sum(getattr(m, "num_members", 1) for m in members) < 2:
            raise ValueError("an ensemble needs at least 2 members (models, heads or LoRA adapters)")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; use one of {sorted(AGGREGATIONS)}")
        if normalize not in ("none", "zscore"):
            raise ValueError(f"normalize must be 'none' or 'zscore', got {normalize!r}")
        if aggregation == "weighted":
            agg_weighted(
                np.zeros((len(members), 1)), weights=None if weights is None else np.asarray(weights)
            )
        self.members = list(members)
        self.aggregation, self.lam, self.normalize = aggregation, float(lam), normalize
        self.weights = None if weights is None else [float(w) for w in weights]
        self.stats = stats
        self.sources: list[str] | None = None  # member folders, when built from saved models

    @property
    def num_members(self) -> int:
        return sum(getattr(m, "num_members", 1) for m in self.members)

    def fit_normalization(
        self, prompts: Sequence[Prompt], responses: Sequence[str]
    ) -> dict[str, list[float]]:
        """Fit per-member mean / std on a calibration set (never on the data being scored)."""
        raw = self.raw_member_scores(prompts, responses)
        std = raw.std(axis=1)
        if np.any(std == 0):
            raise ValueError(
                f"member(s) {np.flatnonzero(std == 0).tolist()} give constant rewards on the calibration set"
            )
        self.stats = {"mean": raw.mean(axis=1).tolist(), "std": std.tolist()}
        return self.stats

    def raw_member_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        """[M, n] rewards of every member before normalisation.

        Multi-head models and LoRA members sharing a base contribute several rows from one model
        (``member_scores``): tokenised once, one base in memory, one backbone pass per adapter / per batch.
        """
        rows = []
        encoded: dict[str, list] = {}  # one tokenisation per distinct tokenizer / template / max_length
        for m in self.members:
            if hasattr(m, "member_scores") and hasattr(m, "formatter"):
                key = m.formatter.encoding_key
                if key not in encoded:
                    encoded[key] = m.formatter.encode_many(prompts, responses)
                rows.extend(m.member_scores(prompts, responses, items=encoded[key]))
            else:
                rows.append(m.score(prompts, responses))
        self.last_tokenizations = len(encoded)
        return np.stack(rows).astype(np.float64)

    def _normalized(self, raw: np.ndarray) -> np.ndarray:
        if self.normalize == "none":
            return raw
        if self.stats is None:
            raise ModelError(
                "normalize='zscore' needs statistics: call fit_normalization(prompts, responses) "
                "on a calibration set first"
            )
        mean, std = np.asarray(self.stats["mean"])[:, None], np.asarray(self.stats["std"])[:, None]
        return (raw - mean) / std

    def score_with_uncertainty(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> EnsembleScores:
        s = self._normalized(self.raw_member_scores(prompts, responses))
        w = None if self.weights is None else np.asarray(self.weights)
        agg = AGGREGATIONS[self.aggregation](s, self.lam, w)
        return EnsembleScores(agg.astype(np.float32), s.astype(np.float32), s.std(axis=0).astype(np.float32))

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        return self.score_with_uncertainty(prompts, responses).aggregate

    def save(self, path: str | os.PathLike, *, force: bool = False) -> None:
        """Members are embedded as ``member_0``, ``member_1``... beside the manifest (copied from their
        source folders when the ensemble was built from saved models)."""
        import shutil

        with atomic_dir(path, force=force) as tmp:
            names = []
            if self.sources is not None:
                for i, src in enumerate(self.sources):
                    shutil.copytree(src, Path(tmp) / f"member_{i}")
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
                self._manifest(
                    members=names,
                    aggregation=self.aggregation,
                    lam=self.lam,
                    weights=self.weights,
                    normalize=self.normalize,
                    stats=self.stats,
                ),
            )

    @classmethod
    def from_paths(
        cls, paths: Sequence[str | os.PathLike], *, share_base: bool = True, **kwargs: Any
    ) -> EnsembleRM:
        """Load saved reward models as an ensemble. With ``share_base``, explicit LoRA members trained on
        the same base are loaded as adapters of one model (one copy of the base weights)."""
        from rewardkit.base import read_manifest

        groups: dict[tuple, list[Path]] = {}
        order: list[tuple] = []
        for p in map(Path, paths):
            man = read_manifest(p) or {}
            key = (
                ("lora", man.get("base_model"), man.get("num_heads", 1))
                if (share_base and man.get("kind") == "explicit" and man.get("lora"))
                else ("single", str(p))
            )
            if key not in groups:
                order.append(key)
            groups.setdefault(key, []).append(p)
        members = []
        for key in order:
            first, *rest = groups[key]
            rm = load_reward_model(first)
            if rest:
                rm.add_lora_members(rest)
            members.append(rm)
        ens = cls(members, **kwargs)
        ens.sources = [str(p.resolve()) for key in order for p in groups[key]]
        return ens

    @classmethod
    def _load(cls, path: Path, manifest: dict[str, Any], **kwargs: Any) -> EnsembleRM:
        dirs = []
        for rel in manifest["members"]:
            member_dir = (path / rel).resolve()
            if not member_dir.is_dir():
                raise ModelError(f"{path}: ensemble member {rel!r} not found")
            dirs.append(member_dir)
        return cls.from_paths(
            dirs,
            aggregation=manifest["aggregation"],
            lam=manifest.get("lam", 1.0),
            weights=manifest.get("weights"),
            normalize=manifest.get("normalize", "none"),
            stats=manifest.get("stats"),
        )
