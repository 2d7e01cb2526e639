"""``rewardkit bench hacking`` settings: a pydantic model, the ``ci`` / ``cpu`` / ``gpu`` presets, and
how a preset, a YAML file and command-line flags combine (each later source overrides the earlier)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rewardkit.bench.hacking_rl_config import RL_MODE_FIELDS, RL_PRESETS, Optimizer, RLSettings
from rewardkit.bench.proxy_config import (
    GPU_TRAINING,
    ProxyTraining,
    layered_fields,
    merge_fields,
)
from rewardkit.limits import LIMITS
from rewardkit.util import config_error


class SpuriousTask(BaseModel):
    """The built-in task's spurious feature (``rewardkit.synthetic.make_hacking_preferences`` /
    ``make_hacking_candidates``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    p_chosen: float = Field(0.9, ge=0, le=1, description="chance a chosen training response has the word")
    p_rejected: float = Field(0.1, ge=0, le=1, description="chance a rejected training response has it")
    p_candidate: float = Field(0.2, ge=0, le=1, description="chance a base-policy candidate pads with it")
    max_count: int = Field(
        6, ge=1, le=LIMITS["max_length"], description="most copies a padded candidate holds"
    )


class HackingConfig(ProxyTraining):
    """Everything one ``rewardkit bench hacking`` run needs; saved as ``config.yaml`` next to the report."""

    gold: str | None = Field(
        None,
        description="gold reward model folder (labels training pairs, scores candidates); "
        "None: the synthetic task's gold reward",
    )
    policy: str | None = Field(None, description="HF causal LM that samples the K candidates (cached)")
    candidates: str | None = Field(None, description="JSONL of {prompt, candidates: [...]} per line")
    n_train: int = Field(256, ge=4, le=LIMITS["pairs"], description="training pairs of every proxy")
    n_val: int = Field(
        64, ge=4, le=LIMITS["pairs"], description="held-out pairs ordering the explicit RMs by accuracy"
    )
    n_prompts: int = Field(64, ge=2, le=LIMITS["pairs"], description="best-of-N prompts (at most)")
    k: int = Field(16, ge=2, le=LIMITS["k"], description="candidates per prompt (largest N)")
    corruption: float = Field(0.25, gt=0, lt=1, description="share of swapped labels in the corrupt setup")
    task: SpuriousTask = Field(default_factory=SpuriousTask)
    seed: int = 0
    pretrain_seeds: list[int] = Field(
        default_factory=list,
        max_length=LIMITS["members"],
        description="ci preset: extra tiny backbones of these initial seeds, for a pretrain ensemble",
    )
    pretrain_models: list[str] = Field(
        default_factory=list,
        max_length=LIMITS["members"],
        description="other pretrained backbones, for a pretrain ensemble",
    )
    dporm: bool = Field(True, description="also train the DPO policy and report its implicit reward")
    max_new_tokens: int = Field(
        64, ge=1, le=LIMITS["max_length"], description="--policy sampling: new tokens per candidate"
    )
    temperature: float = Field(1.0, gt=0, description="--policy sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="--policy nucleus sampling")
    optimizer: Optimizer = Field("bon", description="best-of-N (bon), RL through TRL's GRPOTrainer, or both")
    rl: RLSettings = Field(default_factory=RLSettings, description="the RL half (--optimizer rl|both)")
    tiny_backbone: bool = Field(
        False, description="proxies on the ci preset's tiny word-level backbone instead of the preset's model"
    )

    @model_validator(mode="after")
    def _check(self) -> HackingConfig:
        if self.pretrain_seeds and (self.preset != "ci" or self.model is not None):
            raise ValueError("pretrain_seeds builds tiny backbones: the ci preset without --model only")
        if self.policy is not None and self.candidates is not None:
            raise ValueError("give --policy or --candidates, not both")
        real = self.data is not None or self.recipe not in (None, "synthetic")
        given = [f for f in ("gold", "policy", "candidates") if getattr(self, f) is not None]
        if given and not real:
            raise ValueError(
                f"--{given[0]} needs --data or --recipe (the built-in task has its own gold reward and policy)"
            )
        if real and self.gold is None:
            raise ValueError("real data needs --gold (a reward model that labels pairs and candidates)")
        if real and self.policy is None and self.candidates is None:
            raise ValueError("real data needs --policy or --candidates for the best-of-N candidates")
        if self.optimizer != "bon" and real and self.policy is None:
            raise ValueError("--optimizer rl on real data needs --policy (the initial policy RL starts from)")
        if self.tiny_backbone and real:
            raise ValueError("tiny_backbone covers the built-in task's vocabulary only, not real data")
        if self.optimizer != "bon" and self.rl.eval_prompts > self.n_prompts:
            raise ValueError(
                f"rl.eval_prompts ({self.rl.eval_prompts}) is more than the prompts there are (n_prompts {self.n_prompts})"
            )
        if self.optimizer != "bon" and "DPORM" in self.rl.proxies and not self.dporm:
            raise ValueError("rl.proxies lists DPORM but --no-dporm trains none")
        return self

    @property
    def builtin(self) -> bool:
        """Whether the prompts and training pairs are the built-in spurious synthetic task."""
        return self.data is None and self.recipe in (None, "synthetic")


#: Preset values; a YAML file and flags override them field by field.
HACKING_PRESETS: dict[str, dict[str, Any]] = {
    # tiny local model, built-in task: about 20 s on 2 cores (the test suite runs it)
    "ci": {
        "n_train": 256,
        "n_val": 64,
        "n_prompts": 48,
        "k": 16,
        "max_length": 48,
        "members": 3,
        "pretrain_seeds": [1, 2],
        "exrm": {"epochs": 2, "lr": 3e-3, "batch_size": 16},
        "dpo": {"epochs": 2, "lr": 3e-3, "batch_size": 16},
        "n_boot": 500,
        "rl": RL_PRESETS["ci"],
    },
    # the demo model with LoRA on the built-in task: <= 6 minutes on 2 cores
    "cpu": {
        "n_train": 96,
        "n_val": 24,
        "n_prompts": 40,
        "k": 16,
        "max_length": 48,
        "lora_r": 8,
        "members": 3,
        "exrm": {"epochs": 1, "lr": 1.5e-3, "batch_size": 4},
        "dpo": {"epochs": 1, "lr": 5e-4, "batch_size": 4},
        "n_boot": 1000,
        "rl": RL_PRESETS["cpu"],
    },
    # a real recipe with policy-generated candidates (needs --model, --gold and --policy): hours on a GPU
    "gpu": {
        "recipe": "alpaca_eval",
        "n_train": 20000,
        "n_val": 1000,
        "n_prompts": 500,
        "k": 256,
        "max_length": 1024,
        "members": 6,
        "dtype": "auto",
        **GPU_TRAINING,
        "max_new_tokens": 256,
        "temperature": 0.7,
        "rl": RL_PRESETS["gpu"],
    },
}


def resolve_hacking_config(
    preset: str = "cpu", yaml_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> HackingConfig:
    """Preset < YAML file < ``overrides``; validated, with one-line errors. With ``--optimizer rl|both``
    a preset's RL-mode fields (``RL_MODE_FIELDS``) come right after the preset."""
    fields = layered_fields(HACKING_PRESETS, preset, yaml_file, overrides)
    chosen = fields["preset"]
    if fields.get("optimizer", "bon") != "bon" and chosen in RL_MODE_FIELDS:
        presets = {**HACKING_PRESETS, chosen: merge_fields(HACKING_PRESETS[chosen], RL_MODE_FIELDS[chosen])}
        fields = layered_fields(presets, preset, yaml_file, overrides)
    try:
        return HackingConfig(**fields)
    except ValidationError as e:
        raise config_error(e, "bench hacking config", yaml_file) from None
