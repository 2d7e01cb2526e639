"""``rewardkit bench hacking --optimizer rl|both`` settings: the RL half's pydantic sub-model (the
``rl:`` key of a config file) and its per-preset values."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rewardkit.limits import LIMITS

#: every proxy an RL run can optimise; ``EXRM-1+ER`` is EXRM-1 with Elastic Reset on the policy
RL_PROXIES = ("EXRM-1", "WARM-M", "ENS-mean", "ENS-mean_minus_std", "DPORM", "EXRM-1+ER")

Optimizer = Literal["bon", "rl", "both"]


class RLSettings(BaseModel):
    """GRPO (TRL's ``GRPOTrainer``) against each proxy, and the measurements taken along the way."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int = Field(60, ge=1, le=LIMITS["steps"], description="GRPO optimizer steps per run")
    eval_every: int = Field(
        10, ge=1, le=LIMITS["steps"], description="measure the policy every this many steps (and at 0)"
    )
    eval_prompts: int = Field(
        16, ge=2, le=LIMITS["pairs"], description="held-out prompts measured (the first of the BoN prompts)"
    )
    eval_samples: int = Field(
        4, ge=1, le=LIMITS["k"], description="samples per held-out prompt at each measurement"
    )
    shifted_prompts: int = Field(
        0,
        ge=0,
        le=LIMITS["pairs"],
        description="built-in task: held-out prompts of a domain no policy saw (finance), measured apart",
    )
    eval_batch: int = Field(
        64,
        ge=1,
        le=LIMITS["max_batch_size"],
        description="sequences per generate / KL forward at a measurement",
    )
    train_prompts: int = Field(
        128, ge=1, le=LIMITS["pairs"], description="GRPO training prompts (disjoint from the held-out)"
    )
    prompts_per_step: int = Field(2, ge=1, le=LIMITS["batch_size"], description="prompts per optimizer step")
    num_generations: int = Field(
        8, ge=2, le=LIMITS["k"], description="GRPO group size: completions per prompt"
    )
    max_completion_length: int = Field(
        16, ge=1, le=LIMITS["max_length"], description="new tokens per completion (training and eval)"
    )
    beta: float = Field(0.0, ge=0, description="KL-penalty coefficient of GRPO's loss (TRL's beta)")
    lr: float = Field(1e-3, gt=0, description="policy learning rate")
    lora_r: int | None = Field(
        None, ge=1, le=LIMITS["lora_r"], description="policy LoRA rank; None: full fine-tuning"
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0], min_length=1, max_length=LIMITS["members"], description="RL seeds"
    )
    elastic_reset_every: int = Field(
        20, ge=1, le=LIMITS["steps"], description="EXRM-1+ER: optimizer steps between resets"
    )
    ema_decay: float = Field(0.9, gt=0, lt=1, description="EXRM-1+ER: eta of the EMA update")
    proxies: list[str] = Field(default_factory=lambda: list(RL_PROXIES), min_length=1)
    embedding: Literal["auto", "on", "off"] = Field(
        "auto",
        description="embedding diversity of each prompt's samples (all-MiniLM-L6-v2): auto = where installed",
    )
    sft_epochs: int = Field(
        2, ge=1, le=LIMITS["epochs"], description="initial policy: SFT epochs on base-policy samples"
    )
    sft_lr: float = Field(3e-3, gt=0, description="initial policy: SFT learning rate")
    sft_examples: int = Field(512, ge=1, le=LIMITS["pairs"], description="initial policy: SFT examples")
    use_vllm: bool = Field(False, description="generate GRPO completions with vLLM (GPU)")
    bf16: bool = Field(False, description="train the policy in bf16 (GPU)")

    @model_validator(mode="after")
    def _check(self) -> RLSettings:
        unknown = [p for p in self.proxies if p not in RL_PROXIES]
        if unknown:
            raise ValueError(f"unknown RL proxy {unknown[0]!r}; known: {', '.join(RL_PROXIES)}")
        if len(set(self.proxies)) != len(self.proxies):
            raise ValueError("rl.proxies lists a proxy twice")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("rl.seeds lists a seed twice")
        if self.eval_every > self.steps:
            raise ValueError(f"rl.eval_every ({self.eval_every}) is larger than rl.steps ({self.steps})")
        return self

    def eval_steps(self) -> list[int]:
        """Steps at which the policy is measured: 0, every ``eval_every``, and the last."""
        steps = list(range(0, self.steps + 1, self.eval_every))
        return steps if steps[-1] == self.steps else [*steps, self.steps]


#: RL values per preset (merged under the ``rl`` key of HACKING_PRESETS)
RL_PRESETS: dict[str, dict[str, Any]] = {
    # the ci backbone as policy, full fine-tuning: seconds per run
    "ci": {
        "steps": 20,
        "eval_every": 10,
        "eval_prompts": 8,
        "eval_samples": 4,
        "shifted_prompts": 4,
        "train_prompts": 64,
        "prompts_per_step": 2,
        "num_generations": 4,
        "max_completion_length": 12,
        "lr": 3e-3,
        "seeds": [0],
        "elastic_reset_every": 10,
        "ema_decay": 0.9,
        "sft_epochs": 1,
        "sft_examples": 256,
    },
    # <= 10 minutes on 2 cores with the BoN half (values tuned in rl_policy's notes)
    "cpu": {
        # tuned so the corrupt setup's EXRM-1 shows Gao's rise then fall (rewardkit.bench.rl_policy)
        "steps": 120,
        "eval_every": 20,
        "eval_prompts": 32,
        "eval_samples": 8,
        "shifted_prompts": 8,
        "train_prompts": 256,
        "prompts_per_step": 2,
        "num_generations": 8,
        "max_completion_length": 16,
        "lr": 1.9e-4,
        "sft_examples": 4096,
        "sft_epochs": 3,
        "seeds": [0, 1],
        "elastic_reset_every": 25,
        "ema_decay": 0.9,
    },
    # an SFT'd causal LM with LoRA, vLLM generation, 3 seeds: hours on one GPU
    "gpu": {
        "steps": 1000,
        "eval_every": 50,
        "eval_prompts": 128,
        "eval_samples": 8,
        "eval_batch": 16,
        "train_prompts": 5000,
        "prompts_per_step": 8,
        "num_generations": 8,
        "max_completion_length": 256,
        "beta": 0.01,
        "lr": 1e-5,
        "lora_r": 32,
        "seeds": [0, 1, 2],
        "elastic_reset_every": 250,
        "ema_decay": 0.995,
        "use_vllm": True,
        "bf16": True,
    },
}


#: bench hacking fields a preset takes when ``--optimizer`` is ``rl`` or ``both`` (after the preset, before a
#: YAML file and flags). cpu: one demo-model RM scores 16 of the task's texts in 0.52 s here, 133x the
#: tiny proxy (benchmarks/probes.py rm16): >= 25 min over the RL half's 2,880 GRPO steps, so the RL
#: half's proxies (and so the best-of-N half's, to compare the same proxies) are the ci preset's tiny
#: word-level models
RL_MODE_FIELDS: dict[str, dict[str, Any]] = {
    "cpu": {
        "tiny_backbone": True,
        "lora_r": None,
        "dtype": "float32",
        "n_train": 256,
        "n_val": 64,
        "exrm": {"epochs": 2, "lr": 3e-3, "batch_size": 16},
        "dpo": {"epochs": 2, "lr": 3e-3, "batch_size": 16},
    },
}
