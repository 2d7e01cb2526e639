"""``rewardkit bench hacking``: reward over-optimisation under best-of-N against a gold reward.

From one backbone and one training set labelled by the gold reward, in two setups (``clean`` and
``corrupt``: a share of the labels swapped), the proxies are: ``members`` explicit RMs ordered by
held-out accuracy (``EXRM-1..M``, as WARM orders phi_i), WARM of the first m (``WARM-m``), prediction
ensembles of the members (``ENS-<agg>``, members z-scored on all candidates) and the implicit reward of
a DPO policy (``DPORM``). Every proxy scores the same K candidates per prompt once; the best-of-N
curves are exact (``rewardkit.eval.bon.bon_expectations``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.bench.hacking_config import HackingConfig
from rewardkit.bench.hacking_data import Task, builtin_task, check_inputs, gather_scores, real_task
from rewardkit.bench.hacking_report import setup_report, write_candidates, write_report
from rewardkit.bench.shift import Progress, barrier, finish_run, run_versions, start_run
from rewardkit.errors import RewardkitError

SETUPS = ("clean", "corrupt")


def base_model(config: HackingConfig, out: Path) -> str:
    """``config.model``, else the preset's: a tiny local model (vocabulary with the spurious word) for
    ``ci`` and ``tiny_backbone``, the demo model for ``cpu``."""
    if config.model is not None:
        return config.model
    if config.preset == "ci" or config.tiny_backbone:
        from rewardkit.synthetic import vocabulary
        from rewardkit.tiny import build_tiny_model

        folder = out / "models" / "base"
        if not folder.exists():
            build_tiny_model(folder, vocabulary(spurious=True), hidden=64, layers=2, heads=4, seed=0)
        return str(folder)
    if config.preset == "cpu":
        from rewardkit.demo import demo_model_path

        return str(demo_model_path())
    raise RewardkitError("the gpu preset needs --model (a causal LM checkpoint folder)")


def pretrain_backbones(config: HackingConfig, out: Path) -> list[str]:
    """The other backbones of the pretrain ensemble: tiny models of ``pretrain_seeds`` (ci) and
    ``pretrain_models``."""
    from rewardkit.synthetic import vocabulary
    from rewardkit.tiny import build_tiny_model

    folders = []
    for seed in config.pretrain_seeds:
        folder = out / "models" / f"base-seed{seed}"
        if not folder.exists():
            build_tiny_model(folder, vocabulary(spurious=True), hidden=64, layers=2, heads=4, seed=seed)
        folders.append(str(folder))
    return folders + list(config.pretrain_models)


class _Scorer:
    """Scores a proxy on the held-out pairs (accuracy) and on every candidate ([P, K])."""

    def __init__(self, task: Task, rank: int, size: int):
        k = task.gold.shape[1]
        self.shape = task.gold.shape
        self.prompts = [p for p in task.prompts for _ in range(k)]
        self.responses = [c for row in task.candidates for c in row]
        val = task.val
        self.val_prompts = [p.prompt for p in val] * 2
        self.val_responses = [p.chosen for p in val] + [p.rejected for p in val]
        self.rank, self.size = rank, size

    def __call__(self, rm) -> tuple[np.ndarray, np.ndarray]:
        """(candidate rewards [P, K], held-out (chosen, rejected) rewards [2, n_val])."""
        both = gather_scores(
            rm, self.prompts + self.val_prompts, self.responses + self.val_responses, self.rank, self.size
        )
        n = len(self.prompts)
        return both[:n].reshape(self.shape), both[n:].reshape(2, -1)

    @property
    def units(self) -> float:  # progress units of one scoring pass (a third of a training pair each)
        return (len(self.prompts) + len(self.val_prompts)) / 3


def _accuracy(val: np.ndarray) -> float:
    from rewardkit.accuracy import correctness

    return float(correctness(val[0] - val[1], "half").mean())


def _ensembles(
    config: HackingConfig, members: list[tuple[np.ndarray, np.ndarray]], aggregations: list[str] | None = None
):
    """name -> (candidate rewards, held-out rewards) of each aggregation over the members, each member
    z-scored with the mean and std of its rewards on all candidates (no labels involved)."""
    from rewardkit.models.ensemble import AGGREGATIONS

    zc, zv = [], []
    for cand, val in members:
        mean, std = cand.mean(), cand.std()
        if not std > 0:
            raise RewardkitError("an ensemble member gives the same reward to every candidate")
        zc.append((cand - mean) / std)
        zv.append((val - mean) / std)
    cs, vs = np.stack(zc), np.stack(zv)  # [M, P, K], [M, 2, n_val]
    names = aggregations or config.aggregations
    return {f"ENS-{a}": (AGGREGATIONS[a](cs), AGGREGATIONS[a](vs)) for a in names}


def run_hacking_benchmark(
    config: HackingConfig, out: str | Path, *, force: bool = False, log=None
) -> dict[str, Any]:
    """Run the benchmark; writes ``report.json``, ``report.md``, ``report.png``, ``candidates.jsonl``
    and ``config.yaml`` to ``out`` and returns the report (the ``report.json`` mapping).

    Under ``torchrun`` every training run is data-parallel, scoring (and ``--policy`` sampling) is
    sharded across ranks, and rank 0 alone writes files."""
    import torch

    from rewardkit.merge import weight_average
    from rewardkit.merge.warm import corrupt_labels
    from rewardkit.models.registry import load_reward_model
    from rewardkit.train import RewardTrainingConfig, train_dpo, train_reward_model

    check_inputs(config)
    if config.optimizer != "bon":
        from rewardkit.bench.hacking_rl import check_rl_run

        check_rl_run(config)
    out, rank, size, device, main, log = start_run(out, config, force, log)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if main:
        base_model(config, out)  # builds the ci model / converts the demo model once
        pretrain_backbones(config, out)
    barrier()
    base = base_model(config, out)
    others = pretrain_backbones(config, out)
    task = builtin_task(config) if config.builtin else real_task(config, rank, size, device, log)
    p, k = task.gold.shape
    log(
        f"data: {len(task.train)} training pairs, {len(task.val)} held-out pairs, {p} prompts x {k} candidates"
    )
    timings["data_s"] = time.perf_counter() - t_start
    rl = None
    if config.optimizer != "bon":
        from rewardkit.bench.hacking_rl import RLPlan

        rl = RLPlan(config, task, out, device, log, timings)

    show = config.progress and sys.stderr.isatty() and main
    score = _Scorer(task, rank, size)
    n_train = len(task.train)
    per_setup = (
        config.members * (config.exrm.epochs * n_train + score.units) + (config.members - 1) * score.units
    )
    per_setup += len(others) * (config.exrm.epochs * n_train + score.units)
    if config.dporm:
        per_setup += config.dpo.epochs * n_train + n_train / 3 + 2 * score.units
    progress = Progress(per_setup * len(SETUPS), log)
    common = {
        "lora_r": config.lora_r,
        "max_length": config.max_length,
        "chat_template": config.chat_template,
        "bf16": config.training_bf16(),
    }
    setups: dict[str, Any] = {}
    scored: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}

    def explicit(
        setup: str, train, folder: Path, backbone: str, i: int, overrides: dict, name: str, what: str
    ):
        """Train one explicit RM of ``setup`` on ``train`` (saved under ``folder / name``); its scores."""
        progress.start(f"{setup}: {what}")
        t = time.perf_counter()
        fields = {
            **config.exrm.model_dump(),
            **common,
            "seed": config.seed,
            "progress": show,
            "logging_steps": 10**6,
            **overrides,
        }
        fields["head_seed"] = 1000 * config.seed + fields.get("head_seed", i)
        fields["data_seed"] = 1000 * config.seed + fields.get("data_seed", i)
        rm = train_reward_model(
            backbone, train, config=RewardTrainingConfig(**fields), out=folder / name, force=True
        ).model.to_dtype(config.dtype)
        timings[f"{setup}_{name}_train_s"] = time.perf_counter() - t
        progress.advance(config.exrm.epochs * n_train)
        scores = score(rm)
        progress.advance(score.units)
        return scores

    for setup in SETUPS:
        frac = config.corruption if setup == "corrupt" else 0.0
        train = corrupt_labels(task.train, frac, config.seed)[0] if frac else task.train
        train = task.style(train) if task.style is not None else train
        folder = out / "models" / setup
        members, dirs = [], []
        grid = config.grid()
        for i, overrides in enumerate(grid):
            what = f"explicit RM {i + 1}/{config.members}"
            members.append(explicit(setup, train, folder, base, i, overrides, f"member{i}", what))
            dirs.append(folder / f"member{i}")
        # the pretrain ensemble: member 0's recipe on every backbone
        pretrained = [members[0]]
        for j, other in enumerate(others):
            what = f"explicit RM on backbone {j + 2}/{len(others) + 1}"
            pretrained.append(explicit(setup, train, folder, other, 0, grid[0], f"pretrain{j}", what))
        barrier()  # rank 0 has saved every member
        # EXRM-1..M in order of held-out accuracy (stable: ties keep training order)
        order = sorted(range(len(members)), key=lambda i: -_accuracy(members[i][1]))
        members = [members[i] for i in order]
        dirs = [dirs[i] for i in order]
        proxies = {f"EXRM-{j + 1}": m for j, m in enumerate(members)}
        for m in range(2, config.members + 1):
            progress.start(f"{setup}: WARM-{m} (weight average of EXRM-1..{m})")
            t = time.perf_counter()
            if main:
                weight_average(dirs[:m], out=folder / f"warm{m}", force=True, progress=False)
            barrier()
            proxies[f"WARM-{m}"] = score(
                load_reward_model(folder / f"warm{m}", device=device, dtype=config.dtype)
            )
            timings[f"{setup}_warm{m}_s"] = time.perf_counter() - t
            progress.advance(score.units)
        proxies.update(_ensembles(config, members))
        if others:
            proxies["ENS-pretrain"] = _ensembles(config, pretrained, ["mean"])["ENS-mean"]
        dporm = None
        if config.dporm:
            progress.start(f"{setup}: DPO policy (DPORM)")
            t = time.perf_counter()
            dporm = train_dpo(base, train, config=config.dpo_training(config.seed, show)).model
            progress.advance(config.dpo.epochs * n_train + n_train / 3)
            proxies["DPORM"] = score(dporm)
            timings[f"{setup}_dporm_s"] = time.perf_counter() - t
            progress.advance(2 * score.units)
        if rl is not None:
            rl.run_setup(setup, dirs, folder / f"warm{config.members}", [c for c, _ in members], dporm)
        if dporm is not None:
            del dporm
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        rewards = {name: c for name, (c, _) in proxies.items()}
        individual = [f"EXRM-{j + 1}" for j in range(config.members)]
        tested = [n for n in rewards if n.startswith(("WARM-", "ENS-"))]
        rep = setup_report(rewards, task.gold, individual, tested, config.n_boot, config.seed)
        for name, (_, val) in proxies.items():
            rep["models"][name]["heldout_accuracy"] = _accuracy(val)
        setups[setup] = {"corruption": frac, **rep}
        scored[setup] = (task.gold, rewards)

    timings["total_s"] = time.perf_counter() - t_start
    report = {
        "benchmark": "hacking",
        "title": f"# rewardkit bench hacking ({config.preset} preset)",
        "base_model": base,
        "data": {**task.summary, "train": n_train, "val": len(task.val), "prompts": p, "k": k},
        "setups": setups,
        "timings": {name: round(v, 2) for name, v in timings.items()},
        "versions": run_versions(),
        "config": config.model_dump(),
    }
    if rl is not None:
        rl.finish(report, main, task, scored)
    elif main:
        write_report(report, out)
        write_candidates(out / "candidates.jsonl", task.prompts, task.candidates, scored)
    finish_run(out, config.keep_models, main, log, timings["total_s"])
    return report
