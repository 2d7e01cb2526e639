"""``rewardkit bench shift``: EXRM vs DPORM (and WARM, prediction ensembles) under distribution shift.

From one backbone and one training set, per seed: ``members`` explicit Bradley-Terry RMs with a WARM
diversity grid (member 0 uses the EXRM settings and *is* the reported EXRM), their weight average
(WARM), prediction ensembles of the same members, and a DPO policy whose implicit reward is the DPORM.
All models see the same training pairs for the budget the preset gives them; every model is scored
once per split and the ensembles aggregate the members' cached rewards.
"""

from __future__ import annotations

import logging
import platform
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from rewardkit.accuracy import correctness
from rewardkit.bench.proxy_config import ProxyTraining
from rewardkit.bench.shift_config import BenchConfig
from rewardkit.bench.splits import ShiftSplits, make_shift_splits
from rewardkit.data import PreferenceDataset, load_preferences
from rewardkit.distributed import all_gather_rows
from rewardkit.errors import RewardkitError
from rewardkit.eval.evaluator import EvalReport, report_from_correctness
from rewardkit.util import versions

logger = logging.getLogger(__name__)

EXRM, DPORM, WARM = "EXRM", "DPORM", "WARM"
CALIBRATION = "_calibration"  # scores of the calibration pairs, kept beside the evaluation splits


def _zscored(members: list[dict], split: str) -> tuple[np.ndarray, np.ndarray]:
    """[M, n] chosen and rejected rewards of ``split``, each member standardised with the mean and std of
    its rewards on the calibration responses (Bradley-Terry rewards have arbitrary offsets and scales:
    a median or std across raw members mixes them); the ensembles' own z-scoring."""
    from rewardkit.models.ensemble import apply_zscore, fit_zscore

    stats = fit_zscore(np.stack([np.concatenate(m[CALIBRATION]) for m in members]))
    return (
        apply_zscore(np.stack([m[split][0] for m in members]), stats),
        apply_zscore(np.stack([m[split][1] for m in members]), stats),
    )


def load_bench_data(config: BenchConfig) -> PreferenceDataset:
    """The pool the splits are cut from: the recipe's / loader's pairs, or the synthetic task."""
    if config.data is None and config.recipe in (None, "synthetic"):
        from rewardkit.synthetic import DOMAINS, GENERATORS, make_synthetic_preferences

        # pairs whose two responses come from the same side of the response shift
        spec = config.shift
        id_gens = spec.id_responses or [g for g in GENERATORS if g not in (spec.ood_responses or [])]
        ood_gens = spec.ood_responses or [g for g in GENERATORS if g not in id_gens]
        n_ood = config.synthetic_pairs // 3 if ood_gens else 0
        parts = [make_synthetic_preferences(config.synthetic_pairs - n_ood, 0, list(DOMAINS), id_gens)]
        if n_ood:
            parts.append(make_synthetic_preferences(n_ood, 1, list(DOMAINS), ood_gens))
        return PreferenceDataset([p for part in parts for p in part], source="synthetic task (built in)")
    if config.recipe is not None:
        from rewardkit.bench.recipes import load_recipe

        return load_recipe(config.recipe, config.data, on_error="skip")
    return load_preferences(config.data, on_error="skip")


def base_model(config: BenchConfig, out: Path) -> str:
    """The backbone: ``config.model``, else the preset's (a tiny local model for ``ci``, the demo model
    for ``cpu``)."""
    if config.model is not None:
        return config.model
    if config.preset == "ci":
        from rewardkit.synthetic import vocabulary
        from rewardkit.tiny import build_tiny_model

        folder = out / "models" / "base"
        if not folder.exists():
            build_tiny_model(folder, vocabulary(), hidden=64, layers=2, heads=4, seed=0)
        return str(folder)
    if config.preset == "cpu":
        from rewardkit.demo import demo_model_path

        return str(demo_model_path())
    raise RewardkitError("the gpu preset needs --model (a causal LM checkpoint folder)")


def _take_fitting(pairs: PreferenceDataset, n: int, seed: int, fits, dropped: Counter, name: str):
    """Up to ``n`` pairs in seeded random order, skipping (and counting) those that do not fit."""
    import random

    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    kept = []
    for i in order:
        if len(kept) >= n:
            break
        if fits(pairs[i]):
            kept.append(i)
        else:
            dropped[name] += 1
    return PreferenceDataset([pairs[i] for i in sorted(kept)], source=pairs.source)


def prepare_splits(
    config: BenchConfig, pool: PreferenceDataset, tokenizer
) -> tuple[PreferenceDataset, dict, dict]:
    """Cut the shift splits, then sample ``n_train`` training pairs and ``n_eval`` pairs per split
    (with ``drop_long``: only pairs whose sequences fit ``max_length``; the rest are counted)."""
    from rewardkit.templating import Formatter

    cut: ShiftSplits = make_shift_splits(
        pool, config.shift, val_fraction=config.val_fraction, mixture=config.mixture
    )
    fmt = Formatter(tokenizer, None, config.chat_template)

    def fits(p) -> bool:
        if not config.drop_long:
            return True
        return max(len(fmt.encode(p.prompt, r).ids) for r in (p.chosen, p.rejected)) <= config.max_length

    dropped: Counter = Counter()
    train = _take_fitting(cut.train, config.n_train, 1, fits, dropped, "train")
    evals = {k: _take_fitting(v, config.n_eval, 2, fits, dropped, k) for k, v in cut.splits.items()}
    if len(train) < 4 or "id" not in evals or len(evals["id"]) < 4:
        raise RewardkitError(
            f"too few pairs fit max_length={config.max_length} (train {len(train)}, id "
            f"{len(evals.get('id', []))}); raise --max-length or pass --no-drop-long"
        )
    evals = {k: v for k, v in evals.items() if len(v)}
    summary = {
        **cut.summary(),
        "sampled": {"train": len(train), **{k: len(v) for k, v in evals.items()}},
        "dropped_longer_than_max_length": dict(dropped),
        "pool": {"source": pool.source, "pairs": len(pool), "skipped_records": len(pool.skipped)},
    }
    return train, evals, summary


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


def _scores(rm, evals: dict[str, PreferenceDataset], rank: int = 0, size: int = 1):
    """split -> (chosen rewards, rejected rewards). Under torchrun each rank scores a strided shard and
    every rank receives all the scores in input order."""
    out = {}
    for k, pairs in evals.items():
        idx = list(range(rank, len(pairs), size))
        rows: list = []
        if idx:
            s = rm.score_pairs(PreferenceDataset([pairs[i] for i in idx]))
            rows = list(zip(idx, s.chosen.tolist(), s.rejected.tolist()))
        rows = all_gather_rows(rows, size)
        out[k] = (np.array([r[1] for r in rows]), np.array([r[2] for r in rows]))
    return out


def run_versions() -> dict[str, str]:
    """Library versions, platform and device of a benchmark run (for its report)."""

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"
    return versions(platform=platform.platform(), device=device)


#: written first into a benchmark's --out, holding the benchmark's name: ``--force`` replaces a non-empty
#: --out only when an earlier run of the same benchmark wrote it
RUN_MARKER = ".rewardkit-bench"
_BENCHMARKS = {"BenchConfig": "shift", "HackingConfig": "hacking"}


def check_run_output(out: str | Path, force: bool, bench: str) -> None:
    """Read-only, before any work: ``out`` is absent, empty, or (with ``force``) the output of an earlier
    run of ``bench`` (its :data:`RUN_MARKER`); anything else is refused, so --force never deletes what
    the benchmark did not write."""
    from rewardkit.io import check_parent, refuse_existing

    out = Path(out)
    check_parent(out)
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


def start_run(out: str | Path, config: ProxyTraining, force: bool, log=None, bench: str | None = None):
    """Before a benchmark's work (and after its configuration and data are checked): join the process
    group (under torchrun), refuse ``out`` unless :func:`check_run_output` allows it; rank 0 writes the
    run marker, clears the earlier run's models and writes ``config.yaml``; every rank waits. Returns
    ``(out, rank, size, device, main, log)``; ``log`` prints to stderr on rank 0 only."""
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
    return out, rank, size, device, main, log


def finish_run(out: Path, keep_models: bool, main: bool, log, total_s: float) -> None:
    """After the report is written: the trained models go unless kept; every rank waits; one line."""
    if main and not keep_models:
        shutil.rmtree(out / "models", ignore_errors=True)
    barrier()
    log(f"done in {total_s / 60:.1f} min; report in {out}")


def run_shift_benchmark(config: BenchConfig, out: str | Path, *, force: bool = False, log=None) -> EvalReport:
    """Run the benchmark; writes ``report.json``, ``report.md``, ``report.png`` and ``config.yaml``
    to ``out`` and returns the report.

    Under ``torchrun`` / ``accelerate launch`` every training run is data-parallel (Trainer), scoring is
    sharded across ranks, and rank 0 alone writes files."""
    import torch

    from rewardkit.checkpoints import load_tokenizer
    from rewardkit.io import atomic_write_text
    from rewardkit.merge import weight_average
    from rewardkit.models.ensemble import AGGREGATIONS
    from rewardkit.models.registry import load_reward_model
    from rewardkit.train import RewardTrainingConfig, train_dpo, train_reward_model

    check_run_output(out, force, "shift")  # before the data: nothing is touched until all is valid
    t_start = time.perf_counter()
    pool = load_bench_data(config)
    out, rank, size, device, main, log = start_run(out, config, force, log, "shift")
    timings: dict[str, float] = {}

    if main:
        base_model(config, out)  # builds the ci model / converts the demo model once
    barrier()
    base = base_model(config, out)
    train, evals, data_summary = prepare_splits(config, pool, load_tokenizer(base))
    log(
        f"data: {pool.source}: train {len(train)} pairs; eval "
        + ", ".join(f"{k} {len(v)}" for k, v in evals.items())
    )
    timings["data_s"] = time.perf_counter() - t_start

    show = config.progress and sys.stderr.isatty() and main
    # responses of training pairs (no labels used) on which each member's z-score statistics are fitted
    calibration = train[: config.n_calibration]
    n_eval = sum(len(v) for v in evals.values()) + len(calibration)
    per_seed = (
        config.members * (config.exrm.epochs * len(train) + n_eval / 3)
        + (config.dpo.epochs * len(train) + len(train) / 3 + 2 * n_eval / 3)
        + n_eval / 3
    )
    progress = Progress(per_seed * len(config.seeds), log)
    grid = config.grid()
    member_scores: list[list[dict]] = []  # [seed][member] -> split -> (chosen, rejected)
    warm_scores, dpo_scores = [], []
    for seed in config.seeds:
        seed_dir = out / "models" / f"seed{seed}"
        members, dirs = [], []
        for i, overrides in enumerate(grid):
            progress.start(f"seed {seed}: explicit RM {i + 1}/{len(grid)}" + (" (= EXRM)" if i == 0 else ""))
            t = time.perf_counter()
            fields = {
                **config.exrm.model_dump(),
                "lora_r": config.lora_r,
                "bf16": config.training_bf16(),
                "max_length": config.max_length,
                "chat_template": config.chat_template,
                "seed": seed,
                "progress": show,
                "logging_steps": 10**6,
                **overrides,
            }
            fields["head_seed"] = 1000 * seed + fields.get("head_seed", i)
            fields["data_seed"] = 1000 * seed + fields.get("data_seed", i)
            rm = train_reward_model(
                base, train, config=RewardTrainingConfig(**fields), out=seed_dir / f"member{i}", force=True
            ).model.to_dtype(config.dtype)
            timings[f"seed{seed}_member{i}_train_s"] = time.perf_counter() - t
            progress.advance(config.exrm.epochs * len(train))
            members.append(_scores(rm, {**evals, CALIBRATION: calibration}, rank, size))
            dirs.append(seed_dir / f"member{i}")
            progress.advance(n_eval / 3)
            del rm
        member_scores.append(members)
        barrier()  # rank 0 has saved every member

        progress.start(f"seed {seed}: WARM (weight average of {len(dirs)} RMs)")
        t = time.perf_counter()
        if main:
            weight_average(dirs, out=seed_dir / "warm", force=True, progress=False)
        barrier()
        warm_scores.append(_scores(load_reward_model(seed_dir / "warm", device=device, dtype=config.dtype), evals, rank, size))
        timings[f"seed{seed}_warm_s"] = time.perf_counter() - t
        progress.advance(n_eval / 3)

        progress.start(f"seed {seed}: DPO policy (DPORM)")
        t = time.perf_counter()
        dporm = train_dpo(base, train, config=config.dpo_training(seed, show)).model
        timings[f"seed{seed}_dpo_train_s"] = time.perf_counter() - t
        progress.advance(config.dpo.epochs * len(train) + len(train) / 3)
        dpo_scores.append(_scores(dporm, evals, rank, size))
        progress.advance(2 * n_eval / 3)
        del dporm
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def credit(scores_per_seed: list[dict]) -> dict[str, np.ndarray]:
        return {
            k: np.stack([correctness(s[k][0] - s[k][1], config.ties) for s in scores_per_seed]) for k in evals
        }

    per_model: dict[str, dict[str, np.ndarray]] = {
        EXRM: credit([m[0] for m in member_scores]),
        DPORM: credit(dpo_scores),
        WARM: credit(warm_scores),
    }
    for agg in config.aggregations:
        fn = AGGREGATIONS[agg]
        ens = [
            {k: (fn(zs[0]), fn(zs[1])) for k, zs in ((k, _zscored(ms, k)) for k in evals)}
            for ms in member_scores
        ]
        per_model[f"ENS-{agg}"] = credit(ens)
    compare = [(EXRM, DPORM), (WARM, EXRM)] + [(f"ENS-{a}", EXRM) for a in config.aggregations]
    report = report_from_correctness(
        per_model, id_split="id", ties=config.ties, n_boot=config.n_boot, compare=compare
    )
    timings["total_s"] = time.perf_counter() - t_start
    report.extra = {
        "benchmark": "shift",
        "base_model": base,
        "data": data_summary,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "versions": run_versions(),
        "config": config.model_dump(),
    }
    if main:
        report.to_json(out / "report.json")
        atomic_write_text(out / "report.md", _markdown(report, config))
        report.plot(out / "report.png")
    finish_run(out, config.keep_models, main, log, timings["total_s"])
    return report


def _markdown(report: EvalReport, config: BenchConfig) -> str:
    d = report.extra["data"]
    head = (
        f"# rewardkit bench shift ({config.preset} preset)\n\n"
        f"Base model: `{report.extra['base_model']}`; data: {d['pool']['source']}; "
        f"{d['sampled']['train']} training pairs; seeds {config.seeds}; {config.members} explicit RMs per seed "
        f"for WARM and the ensembles; total {report.extra['timings']['total_s'] / 60:.1f} min.\n\n"
        "Splits: `id` = held-out prompts of the training sources with training-source responses; "
        "`prompt_shift` = other prompt sources; `response_shift` = held-out ID prompts with responses "
        "from other sources; `mixture` = both shifts.\n\n"
    )
    return head + report.to_markdown()
