"""Validated training configs (pydantic), used at the edges: CLI flags, YAML files, Python kwargs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rewardkit.limits import LIMITS

ChatTemplate = Literal["auto", "always", "never"]
CHAT_TEMPLATE_HELP = (
    "when to apply the tokenizer's chat template: auto (conversational prompts only, TRL's rule), "
    "always, never"
)


class PairTrainingConfig(BaseModel):
    """What every pair trainer takes (optimisation, LoRA, seeds, batching, checkpoints, logging): the
    fields both :class:`RewardTrainingConfig` and :class:`DPOTrainingConfig` share, written once."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: float = Field(1.0, gt=0, le=LIMITS["epochs"])
    lr: float = Field(1e-5, gt=0, description="learning rate")
    batch_size: int = Field(8, ge=1, le=LIMITS["batch_size"], description="pairs per device per step")
    grad_accum: int = Field(1, ge=1, le=LIMITS["batch_size"])
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="fraction of steps of linear warm-up")
    lr_scheduler: str = "linear"
    bf16: bool | None = Field(None, description="bf16 autocast; None: on CUDA when supported")
    lora_r: int | None = Field(
        None, ge=1, le=LIMITS["lora_r"], description="LoRA rank; None = full fine-tuning"
    )
    lora_alpha: float | None = None
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    seed: int = Field(
        0, ge=0, lt=2**32, description="everything not covered by the other seeds (e.g. dropout)"
    )
    data_seed: int = Field(0, ge=0, lt=2**32, description="order of the training pairs")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    group_by_length: bool = Field(True, description="batches of similar length (less padding), random order")
    logging_steps: int = Field(10, ge=1)
    save_checkpoints: bool = Field(False, description="keep checkpoints under OUT/checkpoints (resumable)")
    save_steps: int | None = Field(
        None, ge=1, le=LIMITS["steps"], description="checkpoint every N steps (None: every epoch)"
    )
    progress: bool | None = Field(None, description="progress bars; None: when stderr is a terminal")


class RewardTrainingConfig(PairTrainingConfig):
    """Explicit (Bradley-Terry) reward model training."""

    lr: float = Field(1e-5, gt=0, description="learning rate (LoRA usually wants ~1e-4)")
    max_length: int | None = Field(
        None,
        ge=8,
        le=LIMITS["max_length"],
        description="tokens; longer sequences keep their last tokens (None: the model's own, 512 for a new one)",
    )
    chat_template: ChatTemplate | None = Field(
        None, description=CHAT_TEMPLATE_HELP + " (None: the model's own, auto for a new one)"
    )
    dropout: float | None = Field(None, ge=0, lt=1, description="override the backbone's dropout")
    num_heads: int = Field(
        1,
        ge=1,
        le=LIMITS["members"],
        description="independent reward heads on one backbone (multi-head ensemble)",
    )
    seed: int = Field(
        0, ge=0, lt=2**32, description="everything not covered by head_seed / data_seed (e.g. dropout)"
    )
    head_seed: int = Field(0, ge=0, lt=2**32, description="reward-head (and LoRA) initialisation")
    margin_field: str | None = Field(None, description="metadata field holding a per-pair margin")
    center_coef: float = Field(0.0, ge=0, description="centring penalty coefficient (Eisenstein et al.)")
    lp_epochs: float = Field(
        0.0, ge=0, le=LIMITS["epochs"], description="linear-probing warm-up: epochs training only the head"
    )
    lp_lr: float | None = Field(None, gt=0, description="learning rate of the warm-up (default: 10 x lr)")


class DPOTrainingConfig(PairTrainingConfig):
    """DPO training of a policy whose implicit reward is the DPORM."""

    lr: float = Field(1e-6, gt=0, description="learning rate")
    max_length: int = Field(512, ge=8, le=LIMITS["max_length"])
    chat_template: ChatTemplate = Field("auto", description=CHAT_TEMPLATE_HELP)
    bf16: bool | None = Field(
        None, description="bf16 autocast for the policy and the reference pass; None: on CUDA when supported"
    )
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="dtype the returned DPORM scores in (None: bf16 on CUDA, fp32 on CPU)"
    )
    beta: float = Field(0.1, gt=0)
    loss: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative DPO (sigmoid loss only)")
    reduction: Literal["sum", "mean"] = Field("sum", description="reduction the saved DPORM scores with")

    @model_validator(mode="after")
    def _check(self) -> DPOTrainingConfig:
        if self.label_smoothing and self.loss != "sigmoid":
            raise ValueError(f"label_smoothing is defined for the sigmoid loss only, not {self.loss!r}")
        return self
