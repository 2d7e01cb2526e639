"""What both benchmarks' runs share: the output folder's checks and marker (:func:`check_run_output`,
:func:`start_run`, :func:`finish_run`), progress lines, the backbone set-up, the training of one explicit
RM of the diversity grid (:func:`train_member`) and the members' z-scoring for the ensembles
(:func:`zscore_members`)."""

from __future__ import annotations

import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rewardkit.bench.proxy_config import ProxyTraining
from rewardkit.errors import RewardkitError
from rewardkit.util import versions

T = TypeVar("T")


@dataclass
class Run:
    """One benchmark run as :func:`start_run` set it up: its folder, this process's rank among
    ``size`` (torchrun), device, whether it is rank 0 (``main``: it alone writes files), the log
    (rank 0 only), whether training shows progress bars, and the run's timings (seconds)."""

    out: Path
    rank: int
    size: int
    device: Any
    main: bool
    log: Callable[[str], None]
    show: bool
    timings: dict[str, float] = field(default_factory=dict)


class Progress:
    """Stage lines with elapsed time and an ETA from the work done so far (pairs x epochs)."""

    def __init__(self, total: float, log):
        self.total, self.done, self.t0, self.log = total, 0.0, time.perf_counter(), log

    def start(self, what: str) -> None:
        el = time.perf_counter() - self.t0
        eta = el / self.done * (self.total - self.done) if self.done else None
        self.log(
            f"[{self.done / self.total:4.0%}] {what} (elapsed {el / 60:.1f} min"
            + (f", ETA {eta / 60:.1f} min)" if eta is not None else ")")
        )

    def advance(self, units: float) -> None:
        self.done += units


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def run_versions() -> dict[str, str]:
    """Library versions, platform and device of a benchmark run (for its report)."""

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"
    return versions(platform=platform.platform(), device=device, cpu=cpu_model())


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name and its bf16 matmul features (``amx_bf16`` / ``avx512_bf16``), which decide
    what ``--dtype auto`` picks and how fast a run is: times are comparable only on the same CPU."""
    from rewardkit.dtypes import FAST_BF16_FLAGS, cpu_flags

    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    name = names[0] if names else (platform.processor() or "unknown CPU")
    fast = sorted(set(FAST_BF16_FLAGS) & cpu_flags(cpuinfo))
    return f"{name} ({', '.join(fast) if fast else 'no hardware bf16'})"


#: written first into a benchmark's --out, holding the benchmark's name: ``--force`` replaces a non-empty
#: --out only when an earlier run of the same benchmark wrote it
RUN_MARKER = ".rewardkit-bench"
_BENCHMARKS = {"BenchConfig": "shift", "HackingConfig": "hacking"}


def check_run_output(out: str | Path, force: bool, bench: str) -> None:
    """Read-only, before any work: ``out`` is absent, empty, or (with ``force``) the output of an earlier
    run of ``bench`` (its :data:`RUN_MARKER`); anything else is refused, so --force never deletes what
    the benchmark did not write."""
    from rewardkit.io import check_parent, refuse_existing
    from rewardkit.locks import claim_output

    out = Path(out)
    check_parent(out)
    claim_output(out)  # held until the command ends: a second run on this output fails at once
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RewardkitError(f"{out}: is not a folder (--out is the benchmark's output folder)")
    if not out.exists() or not any(out.iterdir()):
        return
    refuse_existing(out, force, what=" and is not empty")
    marker = out / RUN_MARKER
    wrote = None
    if marker.is_file() and not marker.is_symlink():
        with open(marker, "rb") as f:
            wrote = f.read(64).decode("utf-8", "replace").strip()
    if wrote != bench:
        raise RewardkitError(
            f"{out}: not the output of an earlier `rewardkit bench {bench}` run (no {RUN_MARKER} naming it): "
            "--force replaces only that; choose a new or empty --out"
        )


def start_run(out: str | Path, config: ProxyTraining, force: bool, log=None, bench: str | None = None) -> Run:
    """Before a benchmark's work (and after its configuration and data are checked): join the process
    group (under torchrun), refuse ``out`` unless :func:`check_run_output` allows it; rank 0 writes the
    run marker, clears the earlier run's models and writes ``config.yaml``; every rank waits. ``log``
    prints to stderr on rank 0 only."""
    import yaml

    from rewardkit.distributed import init_distributed
    from rewardkit.io import atomic_write_text

    bench = bench or _BENCHMARKS.get(type(config).__name__, type(config).__name__)
    rank, size, device = init_distributed()
    main = rank == 0
    log = (log or (lambda msg: print(msg, file=sys.stderr, flush=True))) if main else (lambda msg: None)
    out = Path(out)
    check_run_output(out, force, bench)
    barrier()
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RUN_MARKER, bench + "\n")
        models = out / "models"
        if models.is_symlink():  # a link is removed, never followed
            models.unlink()
        elif models.is_dir():
            shutil.rmtree(models)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config.model_dump(), sort_keys=False))
    show = bool(config.progress and sys.stderr.isatty() and main)
    return Run(out, rank, size, device, main, log, show)


def finish_run(out: Path, keep_models: bool, main: bool, log, total_s: float) -> None:
    """After the report is written: the trained models go unless kept; every rank waits; one line."""
    if main and not keep_models:
        shutil.rmtree(out / "models", ignore_errors=True)
    barrier()
    log(f"done in {total_s / 60:.1f} min; report in {out}")


def on_rank0_first(run: Run, build: Callable[[], T]) -> T:
    """``build()`` on rank 0, then on every rank once rank 0 is done (building the ci backbone or
    converting the demo model writes files that the other ranks then find)."""
    if run.main:
        build()
    barrier()
    return build()


def tiny_backbone(out: Path, name: str, seed: int, spurious: bool) -> str:
    """A tiny local causal LM over the synthetic task's vocabulary (``spurious``: with the hacking task's
    spurious word) in ``out/models/name``, built once."""
    from rewardkit.synthetic import vocabulary
    from rewardkit.tiny import build_tiny_model

    folder = out / "models" / name
    if not folder.exists():
        build_tiny_model(folder, vocabulary(spurious=spurious), hidden=64, layers=2, heads=4, seed=seed)
    return str(folder)


def base_model(config: ProxyTraining, out: Path, *, tiny: bool, spurious: bool = False) -> str:
    """The backbone: ``config.model``, else the preset's: a tiny local model when ``tiny`` (the ci
    preset), the demo model for ``cpu``; the gpu preset needs ``--model``."""
    if config.model is not None:
        return config.model
    if tiny:
        return tiny_backbone(out, "base", 0, spurious)
    if config.preset == "cpu":
        from rewardkit.demo import demo_model_path

        return str(demo_model_path())
    raise RewardkitError("the gpu preset needs --model (a causal LM checkpoint folder)")


def train_member(
    config: ProxyTraining,
    run: Run,
    backbone: str,
    train,
    folder: Path,
    *,
    seed: int,
    index: int,
    overrides: dict,
):
    """Explicit RM ``index`` of the diversity grid (:meth:`ProxyTraining.member_training`), trained on
    ``train`` into ``folder`` (an earlier run's replaced) and returned in the proxies' scoring dtype."""
    from rewardkit.train import train_reward_model

    training = config.member_training(seed, index, overrides, run.show)
    trained = train_reward_model(backbone, train, config=training, out=folder, force=True)
    return trained.model.to_dtype(config.dtype)


def zscore_members(calibration: np.ndarray, *rewards: np.ndarray) -> list[np.ndarray]:
    """Each member's ``rewards`` ([M, ...] arrays) standardised with the mean and std (ddof 0) of its
    rewards on unlabelled calibration responses (``calibration`` [M, n]): Bradley-Terry rewards have
    arbitrary offsets and scales, so aggregating raw members mixes them. float64; a member with constant
    or non-finite calibration rewards is refused."""
    from rewardkit.models.ensemble import apply_zscore, fit_zscore

    stats = fit_zscore(calibration)
    return [apply_zscore(r.reshape(len(r), -1), stats).reshape(r.shape) for r in rewards]
