"""``rewardkit bench hacking``: reward over-optimisation under best-of-N against a gold reward.

From one backbone and one training set labelled by the gold reward, in two setups (``clean`` and
``corrupt``: a share of the labels swapped), the proxies are: ``members`` explicit RMs ordered by
held-out accuracy (``EXRM-1..M``, as WARM orders phi_i), WARM of the first m (``WARM-m``), prediction
ensembles of the members (``ENS-<agg>``, members z-scored on all candidates) and the implicit reward of
a DPO policy (``DPORM``). Every proxy scores the same K candidates per prompt once; the best-of-N
curves are exact (``rewardkit.eval.bon.bon_expectations``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.bench.hacking_config import HackingConfig
from rewardkit.bench.hacking_data import (
    Task,
    builtin_task,
    check_inputs,
    gather_scores,
    read_real_inputs,
    real_task,
)
from rewardkit.bench.hacking_report import setup_report, write_candidates, write_report
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
    tiny_backbone,
    train_member,
    zscore_members,
)
from rewardkit.locks import holds_output
from rewardkit.templating import Texts

SETUPS = ("clean", "corrupt")


def pretrain_backbones(config: HackingConfig, out: Path) -> list[str]:
    """The other backbones of the pretrain ensemble: tiny models of ``pretrain_seeds`` (ci) and
    ``pretrain_models``."""
    tiny = [tiny_backbone(out, f"base-seed{seed}", seed, spurious=True) for seed in config.pretrain_seeds]
    return tiny + list(config.pretrain_models)


class _Scorer:
    """Scores a proxy on the held-out pairs (accuracy) and on every candidate ([P, K])."""

    def __init__(self, task: Task, rank: int, size: int):
        k = task.gold.shape[1]
        self.shape = task.gold.shape
        self.prompts = [p for p in task.prompts for _ in range(k)]
        self.responses = [c for row in task.candidates for c in row]
        self.val = Texts.from_pairs(task.val)
        self.rank, self.size = rank, size

    def __call__(self, rm) -> tuple[np.ndarray, np.ndarray]:
        """(candidate rewards [P, K], held-out (chosen, rejected) rewards [2, n_val])."""
        both = gather_scores(
            rm, self.prompts + self.val.prompts, self.responses + self.val.responses, self.rank, self.size
        )
        n = len(self.prompts)
        return both[:n].reshape(self.shape), np.stack(self.val.split_pairs(both[n:]))

    @property
    def units(self) -> float:  # progress units of one scoring pass (a third of a training pair each)
        return (len(self.prompts) + len(self.val)) / 3


def _accuracy(val: np.ndarray) -> float:
    from rewardkit.accuracy import correctness

    return float(correctness(val[0] - val[1], "half").mean())


def _ensembles(
    config: HackingConfig, members: list[tuple[np.ndarray, np.ndarray]], aggregations: list[str] | None = None
):
    """name -> (candidate rewards, held-out rewards) of each aggregation over the members, each member
    z-scored with the mean and std of its rewards on all candidates (no labels involved)."""
    from rewardkit.models.ensemble import AGGREGATIONS

    cands, vals = np.stack([c for c, _ in members]), np.stack([v for _, v in members])  # [M, P, K], [M, 2, n]
    cs, vs = zscore_members(cands.reshape(len(members), -1), cands, vals)
    names = aggregations or config.aggregations
    return {f"ENS-{a}": (AGGREGATIONS[a](cs), AGGREGATIONS[a](vs)) for a in names}


@holds_output  # one writer per output, as the training API (the CLI holds it already)
def run_hacking_benchmark(
    config: HackingConfig, out: str | Path, *, force: bool = False, log=None
) -> dict[str, Any]:
    """Run the benchmark; writes ``report.json``, ``report.md``, ``report.png``, ``candidates.jsonl``
    and ``config.yaml`` to ``out`` and returns the report (the ``report.json`` mapping).

    Under ``torchrun`` every training run is data-parallel, scoring (and ``--policy`` sampling) is
    sharded across ranks, and rank 0 alone writes files."""
    from rewardkit.distributed import init_distributed

    check_inputs(config)
    if config.optimizer != "bon":
        from rewardkit.bench.hacking_rl import check_rl_run

        check_rl_run(config)
    check_run_output(out, force, "hacking")  # read-only: nothing is touched until every input is read
    real = None if config.builtin else read_real_inputs(config, init_distributed()[2])
    if real is not None and config.optimizer != "bon":
        from rewardkit.bench.hacking_rl import rl_prompts

        rl_prompts(real.rest, real.prompts, config)  # plain-text prompts for the policy, before any write
    run = start_run(out, config, force, log)
    t_start = time.perf_counter()
    tiny = config.preset == "ci" or config.tiny_backbone
    base, others = on_rank0_first(
        run,
        lambda: (base_model(config, run.out, tiny=tiny, spurious=True), pretrain_backbones(config, run.out)),
    )
    task = builtin_task(config) if real is None else real_task(config, real, run.rank, run.size, run.log)
    p, k = task.gold.shape
    run.log(
        f"data: {len(task.train)} training pairs, {len(task.val)} held-out pairs, {p} prompts x {k} candidates"
    )
    run.timings["data_s"] = time.perf_counter() - t_start
    rl = None
    if config.optimizer != "bon":
        from rewardkit.bench.hacking_rl import RLPlan

        rl = RLPlan(config, task, run.out, run.device, run.log, run.timings)
    proxies = _Proxies(config, run, task, base, others)
    setups: dict[str, Any] = {}
    scored: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    for setup in SETUPS:
        setups[setup], scored[setup] = proxies.run_setup(setup, rl)
    run.timings["total_s"] = time.perf_counter() - t_start
    report = {
        "benchmark": "hacking",
        "title": f"# rewardkit bench hacking ({config.preset} preset)",
        "base_model": base,
        "data": {**task.summary, "train": len(task.train), "val": len(task.val), "prompts": p, "k": k},
        "setups": setups,
        "timings": {name: round(v, 2) for name, v in run.timings.items()},
        "versions": run_versions(),
        "config": config.model_dump(),
    }
    if rl is not None:
        rl.finish(report, run.main, task, scored)
    elif run.main:
        write_report(report, run.out)
        write_candidates(run.out / "candidates.jsonl", task.prompts, task.candidates, scored)
    finish_run(run.out, config.keep_models, run.main, run.log, run.timings["total_s"])
    return report


class _Proxies:
    """One setup's proxies, trained and scored in turn: the explicit RMs of the diversity grid ordered
    by held-out accuracy (EXRM-1..M), member 0's recipe on every other backbone (the pretrain
    ensemble), WARM-m of the first m, the prediction ensembles, the DPORM; and the RL runs on them."""

    def __init__(self, config: HackingConfig, run: Run, task: Task, base: str, others: list[str]):
        self.config, self.run, self.task, self.base, self.others = config, run, task, base, others
        self.score = score = _Scorer(task, run.rank, run.size)
        n_train = len(task.train)
        per_setup = (
            config.members * (config.exrm.epochs * n_train + score.units) + (config.members - 1) * score.units
        )
        per_setup += len(others) * (config.exrm.epochs * n_train + score.units)
        if config.dporm:
            per_setup += config.dpo.epochs * n_train + n_train / 3 + 2 * score.units
        self.progress = Progress(per_setup * len(SETUPS), run.log)

    def run_setup(self, setup: str, rl) -> tuple[dict, tuple[np.ndarray, dict[str, np.ndarray]]]:
        """The setup's report entry and (gold, candidate rewards per proxy)."""
        config, task = self.config, self.task
        frac = config.corruption if setup == "corrupt" else 0.0
        train = _labelled(config, task, frac)
        folder = self.run.out / "models" / setup
        members, dirs, pretrained = self._train_members(setup, train, folder)
        proxies = {f"EXRM-{j + 1}": m for j, m in enumerate(members)}
        proxies.update(self._warm(setup, folder, dirs))
        proxies.update(_ensembles(config, members))
        if self.others:
            proxies["ENS-pretrain"] = _ensembles(config, pretrained, ["mean"])["ENS-mean"]
        dporm = self._dporm(setup, train, proxies) if config.dporm else None
        if rl is not None:
            rl.run_setup(setup, dirs, folder / f"warm{config.members}", [c for c, _ in members], dporm)
        if dporm is not None:
            del dporm
            _free_gpu_cache()
        rewards = {name: c for name, (c, _) in proxies.items()}
        individual = [f"EXRM-{j + 1}" for j in range(config.members)]
        tested = [n for n in rewards if n.startswith(("WARM-", "ENS-"))]
        rep = setup_report(rewards, task.gold, individual, tested, config.n_boot, config.seed)
        for name, (_, val) in proxies.items():
            rep["models"][name]["heldout_accuracy"] = _accuracy(val)
        return {"corruption": frac, **rep}, (task.gold, rewards)

    def _explicit(
        self, setup: str, train, folder: Path, backbone: str, i: int, overrides: dict, name: str, what: str
    ):
        """Train one explicit RM of ``setup`` on ``train`` (saved under ``folder / name``); its scores."""
        config, run = self.config, self.run
        self.progress.start(f"{setup}: {what}")
        t = time.perf_counter()
        rm = train_member(
            config, run, backbone, train, folder / name, seed=config.seed, index=i, overrides=overrides
        )
        run.timings[f"{setup}_{name}_train_s"] = time.perf_counter() - t
        self.progress.advance(config.exrm.epochs * len(self.task.train))
        scores = self.score(rm)
        self.progress.advance(self.score.units)
        return scores

    def _train_members(self, setup: str, train, folder: Path):
        """The members in order of held-out accuracy (stable: ties keep training order), their folders
        in the same order, and the pretrain ensemble's members (member 0's recipe on every backbone)."""
        config, grid = self.config, self.config.grid()
        members, dirs = [], []
        for i, overrides in enumerate(grid):
            what = f"explicit RM {i + 1}/{config.members}"
            members.append(self._explicit(setup, train, folder, self.base, i, overrides, f"member{i}", what))
            dirs.append(folder / f"member{i}")
        pretrained = [members[0]]
        for j, other in enumerate(self.others):
            what = f"explicit RM on backbone {j + 2}/{len(self.others) + 1}"
            pretrained.append(self._explicit(setup, train, folder, other, 0, grid[0], f"pretrain{j}", what))
        barrier()  # rank 0 has saved every member
        order = sorted(range(len(members)), key=lambda i: -_accuracy(members[i][1]))
        return [members[i] for i in order], [dirs[i] for i in order], pretrained

    def _warm(self, setup: str, folder: Path, dirs: list[Path]) -> dict:
        """WARM-m (the weight average of EXRM-1..m) for m = 2..M, each scored."""
        from rewardkit.merge import weight_average
        from rewardkit.models.registry import load_reward_model

        config, run, out = self.config, self.run, {}
        for m in range(2, config.members + 1):
            self.progress.start(f"{setup}: WARM-{m} (weight average of EXRM-1..{m})")
            t = time.perf_counter()
            if run.main:
                weight_average(dirs[:m], out=folder / f"warm{m}", force=True, progress=False)
            barrier()
            out[f"WARM-{m}"] = self.score(
                load_reward_model(folder / f"warm{m}", device=run.device, dtype=config.dtype)
            )
            run.timings[f"{setup}_warm{m}_s"] = time.perf_counter() - t
            self.progress.advance(self.score.units)
        return out

    def _dporm(self, setup: str, train, proxies: dict):
        """The DPO policy of ``setup`` (its implicit reward is the DPORM, scored into ``proxies``)."""
        from rewardkit.train import train_dpo

        config, n_train = self.config, len(self.task.train)
        self.progress.start(f"{setup}: DPO policy (DPORM)")
        t = time.perf_counter()
        dporm = train_dpo(self.base, train, config=config.dpo_training(config.seed, self.run.show)).model
        self.progress.advance(config.dpo.epochs * n_train + n_train / 3)
        proxies["DPORM"] = self.score(dporm)
        self.run.timings[f"{setup}_dporm_s"] = time.perf_counter() - t
        self.progress.advance(2 * self.score.units)
        return dporm


def _labelled(config: HackingConfig, task: Task, frac: float):
    """The setup's training pairs: ``frac`` of the labels swapped (seeded), then the labellers' style."""
    from rewardkit.merge.warm import corrupt_labels

    train = corrupt_labels(task.train, frac, config.seed)[0] if frac else task.train
    return task.style(train) if task.style is not None else train


def _free_gpu_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
