"""``rewardkit bench shift``: EXRM vs DPORM (and WARM, prediction ensembles) under distribution shift.

From one backbone and one training set, per seed: ``members`` explicit Bradley-Terry RMs with a WARM
diversity grid (member 0 uses the EXRM settings and *is* the reported EXRM), their weight average
(WARM), prediction ensembles of the same members, and a DPO policy whose implicit reward is the DPORM.
All models see the same training pairs for the budget the preset gives them; every model is scored
once per split and the ensembles aggregate the members' cached rewards.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np

from rewardkit.accuracy import correctness
from rewardkit.bench.run import (
    Progress,
    Run,
    barrier,
    base_model,
    check_run_output,
    finish_run,
    on_rank0_first,
    run_versions,
    start_run,
    train_member,
    zscore_members,
)
from rewardkit.bench.shift_config import BenchConfig
from rewardkit.bench.splits import ShiftSplits, make_shift_splits
from rewardkit.data import PreferenceDataset, load_preferences
from rewardkit.distributed import score_sharded
from rewardkit.errors import RewardkitError
from rewardkit.eval.evaluator import EvalReport, report_from_correctness
from rewardkit.io import atomic_write_text
from rewardkit.locks import holds_output

logger = logging.getLogger(__name__)

EXRM, DPORM, WARM = "EXRM", "DPORM", "WARM"
CALIBRATION = "_calibration"  # scores of the calibration pairs, kept beside the evaluation splits


def _zscored(members: list[dict], split: str) -> tuple[np.ndarray, np.ndarray]:
    """[M, n] chosen and rejected rewards of ``split``, each member z-scored on its rewards of the
    calibration responses (:func:`~rewardkit.bench.run.zscore_members`); the ensembles' own z-scoring."""
    calibration = np.stack([np.concatenate(m[CALIBRATION]) for m in members])
    chosen, rejected = (np.stack([m[split][j] for m in members]) for j in (0, 1))
    zc, zr = zscore_members(calibration, chosen, rejected)
    return zc, zr


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


def cut_splits(config: BenchConfig, pool: PreferenceDataset) -> ShiftSplits:
    """The shift splits of ``pool`` (a spec that does not fit the data is one line, before any write)."""
    return make_shift_splits(pool, config.shift, val_fraction=config.val_fraction, mixture=config.mixture)


def prepare_splits(
    config: BenchConfig, pool: PreferenceDataset, tokenizer, cut: ShiftSplits | None = None
) -> tuple[PreferenceDataset, dict, dict]:
    """Cut the shift splits (unless ``cut`` is given), then sample ``n_train`` training pairs and
    ``n_eval`` pairs per split (with ``drop_long``: only pairs whose sequences fit ``max_length``; the
    rest are counted)."""
    from rewardkit.templating import Formatter

    cut = cut if cut is not None else cut_splits(config, pool)
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


def _scores(rm, evals: dict[str, PreferenceDataset], rank: int = 0, size: int = 1):
    """split -> (chosen rewards, rejected rewards). Under torchrun each rank scores a strided shard and
    every rank receives all the scores in input order."""
    out = {}
    for k, pairs in evals.items():

        def both(idx: list[int], pairs=pairs) -> np.ndarray:
            s = rm.score_pairs(PreferenceDataset([pairs[i] for i in idx]))
            return np.stack([s.chosen, s.rejected], axis=1)

        rows = score_sharded(both, len(pairs), rank, size).reshape(len(pairs), 2)
        out[k] = (rows[:, 0], rows[:, 1])
    return out


@holds_output  # one writer per output, as the training API (the CLI holds it already)
def run_shift_benchmark(config: BenchConfig, out: str | Path, *, force: bool = False, log=None) -> EvalReport:
    """Run the benchmark; writes ``report.json``, ``report.md``, ``report.png`` and ``config.yaml``
    to ``out`` and returns the report.

    Under ``torchrun`` / ``accelerate launch`` every training run is data-parallel (Trainer), scoring is
    sharded across ranks, and rank 0 alone writes files."""
    from rewardkit.checkpoints import check_model_folder, load_tokenizer

    check_run_output(out, force, "shift")  # before the data: nothing is touched until all is valid
    if config.model is not None:
        check_model_folder(config.model, "--model model")
    t_start = time.perf_counter()
    pool = load_bench_data(config)
    cut = cut_splits(config, pool)  # the shift spec against the data, before anything is written
    run = start_run(out, config, force, log, "shift")
    base = on_rank0_first(run, lambda: base_model(config, run.out, tiny=config.preset == "ci"))
    train, evals, data_summary = prepare_splits(config, pool, load_tokenizer(base), cut)
    run.log(
        f"data: {pool.source}: train {len(train)} pairs; eval "
        + ", ".join(f"{k} {len(v)}" for k, v in evals.items())
    )
    run.timings["data_s"] = time.perf_counter() - t_start
    proxies = _Proxies(config, run, base, train, evals)
    for seed in config.seeds:
        proxies.train_seed(seed)
    report = _report(config, evals, proxies)
    run.timings["total_s"] = time.perf_counter() - t_start
    report.extra = {
        "benchmark": "shift",
        "base_model": base,
        "data": data_summary,
        "timings": {k: round(v, 2) for k, v in run.timings.items()},
        "versions": run_versions(),
        "config": config.model_dump(),
    }
    if run.main:
        report.to_json(run.out / "report.json")
        atomic_write_text(run.out / "report.md", _markdown(report, config))
        report.plot(run.out / "report.png")
    finish_run(run.out, config.keep_models, run.main, run.log, run.timings["total_s"])
    return report


class _Proxies:
    """Per seed: the explicit RMs of the diversity grid (member 0 is the EXRM), their WARM merge and the
    DPO policy (the DPORM), each scored on every split as soon as it is trained; the members are also
    scored on the calibration pairs their z-scores are fitted on."""

    def __init__(self, config: BenchConfig, run: Run, base: str, train: PreferenceDataset, evals: dict):
        self.config, self.run, self.base, self.train, self.evals = config, run, base, train, evals
        # responses of training pairs (no labels used) on which each member's z-score statistics are fitted
        self.calibration = train[: config.n_calibration]
        self.n_eval = n_eval = sum(len(v) for v in evals.values()) + len(self.calibration)
        per_seed = (
            config.members * (config.exrm.epochs * len(train) + n_eval / 3)
            + (config.dpo.epochs * len(train) + len(train) / 3 + 2 * n_eval / 3)
            + n_eval / 3
        )
        self.progress = Progress(per_seed * len(config.seeds), run.log)
        self.members: list[list[dict]] = []  # [seed][member] -> split -> (chosen, rejected)
        self.warm: list[dict] = []
        self.dpo: list[dict] = []

    def _scores(self, rm, evals: dict[str, PreferenceDataset]) -> dict:
        return _scores(rm, evals, self.run.rank, self.run.size)

    def train_seed(self, seed: int) -> None:
        folder = self.run.out / "models" / f"seed{seed}"
        dirs = self._train_members(seed, folder)
        self._train_warm(seed, folder, dirs)
        self._train_dporm(seed)

    def _train_members(self, seed: int, folder: Path) -> list[Path]:
        config, run, progress, grid = self.config, self.run, self.progress, self.config.grid()
        members, dirs = [], []
        for i, overrides in enumerate(grid):
            progress.start(f"seed {seed}: explicit RM {i + 1}/{len(grid)}" + (" (= EXRM)" if i == 0 else ""))
            t = time.perf_counter()
            dirs.append(folder / f"member{i}")
            rm = train_member(
                config, run, self.base, self.train, dirs[-1], seed=seed, index=i, overrides=overrides
            )
            run.timings[f"seed{seed}_member{i}_train_s"] = time.perf_counter() - t
            progress.advance(config.exrm.epochs * len(self.train))
            members.append(self._scores(rm, {**self.evals, CALIBRATION: self.calibration}))
            progress.advance(self.n_eval / 3)
            del rm
        self.members.append(members)
        barrier()  # rank 0 has saved every member
        return dirs

    def _train_warm(self, seed: int, folder: Path, dirs: list[Path]) -> None:
        from rewardkit.merge import weight_average
        from rewardkit.models.registry import load_reward_model

        self.progress.start(f"seed {seed}: WARM (weight average of {len(dirs)} RMs)")
        t = time.perf_counter()
        if self.run.main:
            weight_average(dirs, out=folder / "warm", force=True, progress=False)
        barrier()
        warm = load_reward_model(folder / "warm", device=self.run.device, dtype=self.config.dtype)
        self.warm.append(self._scores(warm, self.evals))
        self.run.timings[f"seed{seed}_warm_s"] = time.perf_counter() - t
        self.progress.advance(self.n_eval / 3)

    def _train_dporm(self, seed: int) -> None:
        import torch

        from rewardkit.train import train_dpo

        config, n = self.config, len(self.train)
        self.progress.start(f"seed {seed}: DPO policy (DPORM)")
        t = time.perf_counter()
        dporm = train_dpo(self.base, self.train, config=config.dpo_training(seed, self.run.show)).model
        self.run.timings[f"seed{seed}_dpo_train_s"] = time.perf_counter() - t
        self.progress.advance(config.dpo.epochs * n + n / 3)
        self.dpo.append(self._scores(dporm, self.evals))
        self.progress.advance(2 * self.n_eval / 3)
        del dporm
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _report(config: BenchConfig, evals: dict, proxies: _Proxies) -> EvalReport:
    """Per-pair correctness of every model (seeds stacked) on every split, the ensembles' from the
    members' z-scored rewards, and the report with its CIs and paired tests."""
    from rewardkit.models.ensemble import AGGREGATIONS

    def credit(scores_per_seed: list[dict]) -> dict[str, np.ndarray]:
        return {
            k: np.stack([correctness(s[k][0] - s[k][1], config.ties) for s in scores_per_seed]) for k in evals
        }

    per_model: dict[str, dict[str, np.ndarray]] = {
        EXRM: credit([m[0] for m in proxies.members]),
        DPORM: credit(proxies.dpo),
        WARM: credit(proxies.warm),
    }
    for agg in config.aggregations:
        fn = AGGREGATIONS[agg]
        ens = [
            {k: (fn(zs[0]), fn(zs[1])) for k, zs in ((k, _zscored(ms, k)) for k in evals)}
            for ms in proxies.members
        ]
        per_model[f"ENS-{agg}"] = credit(ens)
    compare = [(EXRM, DPORM), (WARM, EXRM)] + [(f"ENS-{a}", EXRM) for a in config.aggregations]
    return report_from_correctness(
        per_model, id_split="id", ties=config.ties, n_boot=config.n_boot, compare=compare
    )


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
