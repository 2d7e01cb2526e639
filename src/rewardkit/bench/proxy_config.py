"""What both benchmarks' settings share: how the proxy reward models are trained (:class:`ProxyTraining`,
the ``gpu`` presets' training budgets) and how a preset, a YAML file and command-line flags combine
(each later source overrides the earlier), with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rewardkit.errors import RewardkitError
from rewardkit.limits import LIMITS
from rewardkit.models.ensemble import AGGREGATIONS
from rewardkit.util import first_error


class ModelBudget(BaseModel):
    """Training settings of one model kind (the other fields of the training configs keep defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: float = Field(1.0, gt=0, le=LIMITS["epochs"])
    lr: float = Field(1e-5, gt=0)
    batch_size: int = Field(8, ge=1, le=LIMITS["batch_size"])
    grad_accum: int = Field(1, ge=1, le=LIMITS["batch_size"])
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)


def _check_member(index: int, fields: dict[str, Any]) -> None:
    """A warm_grid entry's training fields as :class:`RewardTrainingConfig` checks them (names, ranges and
    limits), as a ValueError naming the entry and the field."""
    from rewardkit.train.config import RewardTrainingConfig

    try:
        RewardTrainingConfig(**fields)
    except ValidationError as e:
        loc, msg = first_error(e)
        raise ValueError(f"warm_grid[{index}].{loc}: {msg}") from None


class ProxyTraining(BaseModel):
    """What both benchmarks share: the backbone and data source, and how the proxies are trained (the
    explicit RMs on a diversity grid, their WARM merges and ensembles, the DPO policy)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: Literal["ci", "cpu", "gpu"] = "cpu"
    model: str | None = Field(
        None, description="base checkpoint; None: the preset's (ci: a tiny local model, cpu: the demo model)"
    )
    data: str | None = Field(None, description="preference source; None: the built-in synthetic task")
    recipe: str | None = Field(
        None, description="named data recipe (fields + default shifts), e.g. alpaca_eval"
    )
    max_length: int = Field(
        512, ge=8, le=LIMITS["max_length"], description="tokens per sequence (prompt + response)"
    )
    chat_template: Literal["auto", "always", "never"] = Field(
        "auto", description="token convention of every model (see rewardkit.templating)"
    )
    lora_r: int | None = Field(
        None, ge=1, le=LIMITS["lora_r"], description="LoRA rank for every model; None: full fine-tuning"
    )
    members: int = Field(
        3,
        ge=2,
        le=LIMITS["members"],
        description="explicit RMs (per seed / setup) for WARM and the ensembles",
    )
    warm_grid: list[dict[str, Any]] | None = Field(
        None,
        description="per-member overrides (head_seed, data_seed, lr, dropout, ...); default: "
        "different head and data seeds, lr x {1, 0.5, 2}",
    )
    exrm: ModelBudget = Field(default_factory=ModelBudget)
    dpo: ModelBudget = Field(default_factory=lambda: ModelBudget(epochs=2, lr=1e-6))
    beta: float = Field(0.1, gt=0, description="DPO beta (also the DPORM's)")
    aggregations: list[str] = Field(
        default_factory=lambda: ["mean", "median", "mean_minus_std"],
        description="ensemble aggregations, over members z-scored on calibration rewards",
    )
    n_boot: int = Field(2000, ge=100, le=LIMITS["n_boot"])
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32",
        description="precision the proxies are scored in; where it is bfloat16 they also train in bf16 "
        "autocast (else the trainers' default: bf16 on CUDA, float32 on CPU): auto = bfloat16 on a GPU "
        "or a CPU with hardware bf16 matmuls (docs/scoring.md, docs/training.md)",
    )
    keep_models: bool = Field(False, description="keep the trained model folders under out/models")
    progress: bool = True

    @model_validator(mode="after")
    def _check_proxies(self) -> ProxyTraining:
        known = sorted(set(AGGREGATIONS) - {"weighted"})
        unknown = sorted(set(self.aggregations) - set(known))
        if unknown:
            raise ValueError(f"unknown aggregations {unknown}; known: {known} ('weighted' needs weights)")
        if self.warm_grid is not None and len(self.warm_grid) != self.members:
            raise ValueError(f"warm_grid has {len(self.warm_grid)} entries but members is {self.members}")
        for i, overrides in enumerate(
            self.warm_grid or []
        ):  # each entry's fields and limits, before any work
            _check_member(i, {**self.exrm.model_dump(), "lora_r": self.lora_r, **overrides})
        return self

    def scoring_dtype(self) -> str:
        """``dtype`` as this machine resolves it (float32, bfloat16 or float16)."""
        from rewardkit.dtypes import dtype_name, resolve_device, resolve_dtype

        return dtype_name(resolve_dtype(self.dtype, resolve_device(None)))

    def training_bf16(self) -> bool | None:
        """The proxies' ``bf16`` training field: True (bf16 autocast) where they score in bfloat16;
        otherwise None, the trainers' default (bf16 autocast on a CUDA GPU that supports it, float32
        on CPU). float16 training, which needs loss scaling, is not offered."""
        return True if self.scoring_dtype() == "bfloat16" else None

    def dpo_training(self, seed: int, progress: bool):
        """The DPO policy's training config (the DPORM): the dpo budget, beta, the shared sequence
        settings, ``seed`` for the run and the data order."""
        from rewardkit.train.config import DPOTrainingConfig

        return DPOTrainingConfig(
            **self.dpo.model_dump(),
            dtype=self.scoring_dtype(),
            bf16=self.training_bf16(),
            beta=self.beta,
            lora_r=self.lora_r,
            max_length=self.max_length,
            chat_template=self.chat_template,
            seed=seed,
            data_seed=seed,
            progress=progress,
            logging_steps=10**6,
        )

    def member_training(self, seed: int, index: int, overrides: dict[str, Any], progress: bool):
        """The training config of explicit RM ``index`` of the diversity grid (:meth:`grid`'s
        ``overrides`` over the EXRM budget and the shared sequence settings); its head and data seeds
        are ``1000 x seed`` plus its own (by default its index), so seeds never collide across runs."""
        from rewardkit.train.config import RewardTrainingConfig

        fields = {
            **self.exrm.model_dump(),
            "lora_r": self.lora_r,
            "bf16": self.training_bf16(),
            "max_length": self.max_length,
            "chat_template": self.chat_template,
            "seed": seed,
            "progress": progress,
            "logging_steps": 10**6,
            **overrides,
        }
        fields["head_seed"] = 1000 * seed + fields.get("head_seed", index)
        fields["data_seed"] = 1000 * seed + fields.get("data_seed", index)
        return RewardTrainingConfig(**fields)

    def grid(self) -> list[dict[str, Any]]:
        """Per-member overrides; member 0 uses the EXRM's own settings and is the reported EXRM."""
        if self.warm_grid is not None:
            return [dict(g) for g in self.warm_grid]
        lr_scale = [1.0, 0.5, 2.0]
        return [
            {"head_seed": i, "data_seed": i, "lr": self.exrm.lr * lr_scale[i % 3]}
            for i in range(self.members)
        ]


#: How both benchmarks' ``gpu`` presets train (Lin et al.'s settings): the EXRM and DPO budgets, beta.
GPU_TRAINING: dict[str, Any] = {
    "exrm": {"epochs": 1, "lr": 5e-6, "batch_size": 8, "grad_accum": 4, "warmup_ratio": 0.1},
    "dpo": {"epochs": 2, "lr": 1e-6, "batch_size": 8, "grad_accum": 4, "warmup_ratio": 0.1},
    "beta": 0.03,
}


def merge_fields(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge_fields(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def layered_fields(
    presets: dict[str, dict[str, Any]],
    preset: str,
    yaml_file: str | Path | None,
    overrides: dict[str, Any] | None,
) -> dict[str, Any]:
    """A benchmark's config fields: the preset (a YAML file's ``preset`` replaces the one asked for),
    then the file's fields, then the ``overrides`` that are not None, merged field by field."""
    loaded = read_config_file(yaml_file) if yaml_file is not None else {}
    preset = loaded.get("preset", preset)
    if preset not in presets:
        raise RewardkitError(f"unknown preset {preset!r}; known: {', '.join(presets)}")
    fields = merge_fields(merge_fields({"preset": preset}, presets[preset]), loaded)
    return merge_fields(fields, {k: v for k, v in (overrides or {}).items() if v is not None})


def read_config_file(yaml_file: str | Path) -> dict[str, Any]:
    """The mapping of config fields in a YAML file, or a one-line error."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(yaml_file).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RewardkitError(f"{yaml_file}: cannot read config ({e})") from None
    if not isinstance(loaded, dict):
        raise RewardkitError(f"{yaml_file}: expected a mapping of bench config fields")
    return loaded
