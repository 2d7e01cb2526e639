"""``rewardkit bench shift`` settings: the shift spec, :class:`BenchConfig`, the ``ci`` / ``cpu`` / ``gpu``
presets and :func:`resolve_config` (preset < recipe defaults < YAML file < flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rewardkit.bench.proxy_config import (
    GPU_TRAINING,
    ProxyTraining,
    layered_fields,
    merge_fields,
)
from rewardkit.limits import LIMITS
from rewardkit.util import config_error


class ShiftSpec(BaseModel):
    """How the data's metadata defines the shifts.

    A pair's *prompt source* is ``metadata[prompt_field]``; its *response sources* are the values of
    ``response_fields`` (e.g. the generators of the two responses), ignoring ``shared_responses``
    (a generator present in every pair, such as AlpacaEval's reference model).
    """

    model_config = ConfigDict(extra="forbid")

    prompt_field: str | None = Field("subset", description="metadata field naming the prompt source")
    id_prompts: list[str] | None = Field(None, description="prompt sources trained on (ID)")
    ood_prompts: list[str] | None = Field(None, description="OOD prompt sources (default: all others)")
    response_fields: list[str] = Field(
        default_factory=lambda: ["chosen_generator", "rejected_generator"],
        description="metadata fields naming the responses' sources (empty: no response shift)",
    )
    id_responses: list[str] | None = Field(None, description="response sources trained on (ID)")
    ood_responses: list[str] | None = Field(None, description="OOD response sources (default: all others)")
    shared_responses: list[str] = Field(
        default_factory=list, description="response sources ignored when classifying a pair"
    )

    @model_validator(mode="after")
    def _check(self) -> ShiftSpec:
        for a, b, what in (
            (self.id_prompts, self.ood_prompts, "prompt"),
            (self.id_responses, self.ood_responses, "response"),
        ):
            overlap = sorted(set(a or []) & set(b or []))
            if overlap:
                raise ValueError(f"{what} sources {overlap} are listed as both ID and OOD")
        if self.id_prompts is not None and self.prompt_field is None:
            raise ValueError("id_prompts needs prompt_field")
        if self.id_responses is not None and not self.response_fields:
            raise ValueError("id_responses needs response_fields")
        return self


class BenchConfig(ProxyTraining):
    """Everything one ``rewardkit bench shift`` run needs; saved as ``config.yaml`` next to the report."""

    shift: ShiftSpec = Field(default_factory=ShiftSpec)
    n_train: int = Field(
        256, ge=4, le=LIMITS["pairs"], description="training pairs (sampled from the ID training pool)"
    )
    n_eval: int = Field(128, ge=4, le=LIMITS["pairs"], description="pairs per evaluation split (at most)")
    synthetic_pairs: int = Field(
        4000, ge=100, le=LIMITS["pairs"], description="size of the synthetic pool when data is None"
    )
    drop_long: bool = Field(
        True, description="drop pairs longer than max_length (counted in the report) instead of truncating"
    )
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=LIMITS["members"])
    n_calibration: int = Field(
        64,
        ge=2,
        le=LIMITS["pairs"],
        description="training pairs whose responses fit each member's z-score statistics",
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description="ID prompts held out for ID evaluation")
    mixture: bool = Field(True, description="also evaluate on pairs with both prompt and response shift")
    ties: Literal["half", "correct", "wrong"] = "half"


#: Preset values; a YAML file and flags override them field by field.
PRESETS: dict[str, dict[str, Any]] = {
    # tiny local model, synthetic task: < 2 minutes on 2 cores (the test suite runs it)
    "ci": {
        "n_train": 384,
        "n_eval": 96,
        "synthetic_pairs": 2500,
        "max_length": 64,
        "members": 3,
        "exrm": {"epochs": 3, "lr": 3e-3, "batch_size": 16},
        "dpo": {"epochs": 3, "lr": 3e-3, "batch_size": 16},
        "beta": 0.1,
        "n_boot": 500,
    },
    # the demo model with LoRA, short sequences, a few hundred pairs: <= 15 minutes on 2 cores
    "cpu": {
        "n_train": 144,
        "n_eval": 128,
        "dtype": "auto",
        "max_length": 112,
        "lora_r": 8,
        "members": 3,
        "exrm": {"epochs": 1, "lr": 1e-3, "batch_size": 4},
        "dpo": {"epochs": 1, "lr": 5e-4, "batch_size": 4},
        "beta": 0.1,
    },
    # Lin et al.'s settings on the user's model and data
    "gpu": {
        "n_train": 20000,
        "n_eval": 1000,
        "max_length": 1024,
        "drop_long": False,
        "seeds": [0, 1, 2],
        "members": 3,
        "dtype": "auto",
        **GPU_TRAINING,
    },
}


def resolve_config(
    preset: str = "cpu", yaml_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> BenchConfig:
    """Preset < recipe defaults (shift spec) < YAML file < ``overrides``; validated, with one-line errors."""
    from rewardkit.bench.recipes import get_recipe

    fields = layered_fields(PRESETS, preset, yaml_file, overrides)
    recipe = fields.get("recipe")
    if recipe is not None or fields.get("data") is None:
        defaults = get_recipe(recipe or "synthetic").shift
        fields["shift"] = merge_fields(defaults, fields.get("shift") or {})
    try:
        return BenchConfig(**fields)
    except ValidationError as e:
        raise config_error(e, "bench config", yaml_file) from None
