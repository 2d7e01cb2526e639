"""``rewardkit merge`` settings: a pydantic model at the edge (CLI flags or a YAML file)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MergeConfig(BaseModel):
    """``rewardkit merge`` settings (CLI flags or a YAML file); written back next to the output."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sources: list[str] = Field(..., min_length=2, description="reward model folders to average")
    out: str
    weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, description="finite, non-negative; normalised to sum 1; default uniform"
    )
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    shard_size: str | int = Field("2GB", description="largest output shard: bytes, or e.g. 2GB / 500MB")

    @model_validator(mode="after")
    def _check(self) -> MergeConfig:
        from rewardkit.util import parse_size

        parse_size(self.shard_size, "shard size")  # a one-line error for 0, negative or unreadable sizes
        return self
