"""What the weight-averaging code shares: weight and size checks, model files, provenance, LoRA scaling."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardkit.errors import ModelError, RewardkitError
from rewardkit.io import own_file, write_json
from rewardkit.manifest import MANIFEST
from rewardkit.util import TOKENIZER_FILES, scaled_weights, versions
from rewardkit.util import parse_size as _parse_size

#: output dtype option -> safetensors dtype name
DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}

#: Files a merged model needs besides its weights (config, generation settings, tokenizer, template);
#: anything else in a source folder (training arguments, stray data, stale weights) is not copied.
MODEL_FILES = ("config.json", "generation_config.json", *TOKENIZER_FILES)


def parse_size(size: str | int) -> int:
    """A shard size in bytes (see :func:`rewardkit.util.parse_size`)."""
    return _parse_size(size, "shard size")


def check_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """The weights as given (1 each by default): ``n`` finite non-negative numbers, not all zero,
    rescaled only where float32 arithmetic could not hold them (:func:`rewardkit.util.scaled_weights`)."""
    if weights is None:
        return [1.0] * n
    try:
        return scaled_weights(weights, n)
    except RewardkitError as e:
        raise ModelError(str(e)) from None


def normalize_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Uniform by default; otherwise non-negative weights divided by their sum."""
    w = check_weights(weights, n)
    return [x / sum(w) for x in w]


def mismatch(what: str, names: Sequence[str]) -> ModelError:
    shown = ", ".join(sorted(names)[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
    return ModelError(f"cannot merge: {what}: {shown}")


def copy_model_files(src: Path, dst: Path) -> list[str]:
    """Copy the files a model needs besides its weights (:data:`MODEL_FILES`); returns their names."""
    copied = []
    for name in MODEL_FILES:  # a link is copied only as a regular file inside src (never followed out)
        if (src / name).is_file() or (src / name).is_symlink():
            shutil.copyfile(own_file(src, src / name), dst / name)
            copied.append(name)
    return copied


def provenance(
    folder: Path,
    srcs: Sequence[Path],
    w: Sequence[float],
    hashes: Sequence[str],
    manifest: dict[str, Any],
    dtype: str | None,
    lora: bool,
    copied: Sequence[str] = (),
) -> None:
    write_json(
        folder / "merge.json",
        {
            "method": "exact LoRA average merged into the base"
            if lora
            else "weighted average (float32 accumulation)",
            "inputs": [
                {"path": str(s.resolve()), "weight": wi, "tensor_hash": h}
                for s, wi, h in zip(srcs, w, hashes)
            ],
            "tensor_hash": "sha256 of adapter_model.safetensors"
            if lora
            else "xxh3-128 of every tensor's bytes in key order",
            "weights_normalised_to_sum_1": True,
            "dtype": dtype or "inputs'",
            "copied_files": sorted(copied),
            "versions": versions(),
        },
    )
    if manifest:
        man = {**manifest, "lora": False, "base_model": None, "merged_from": [str(s.resolve()) for s in srcs]}
        write_json(folder / MANIFEST, man)


def lora_scaling(config: dict[str, Any], where: Path) -> float:
    """s = alpha / r (alpha / sqrt(r) with rsLoRA); refuses what an exact average cannot handle."""
    if config.get("use_dora"):
        raise ModelError(f"{where}: DoRA adapters are not supported by the exact LoRA average")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise ModelError(f"{where}: LoRA bias terms are not supported by the exact LoRA average")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelError(
            f"{where}: per-module rank/alpha patterns are not supported by the exact LoRA average"
        )
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
