"""LoRA wrapping, one way for both trainers: every linear layer of the backbone, lora_alpha = 2r unless
given, adapter matrices seeded apart from everything else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal


def add_lora(
    model: Any,
    r: int,
    lora_alpha: float | None = None,
    dropout: float = 0.0,
    *,
    task: Literal["SEQ_CLS", "CAUSAL_LM"] = "SEQ_CLS",
    target_modules: str | list[str] = "all-linear",
    exclude: Sequence[str] = (),
    seed: int | None = None,
) -> Any:
    """``model`` wrapped with LoRA of rank ``r`` (peft); ``exclude``: modules trained in full instead
    (a reward head); ``seed``: the adapters' initialisation, drawn without disturbing the global RNG."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=getattr(TaskType, task),
        r=r,
        lora_alpha=lora_alpha if lora_alpha is not None else 2 * r,
        lora_dropout=dropout,
        target_modules=target_modules,
        exclude_modules=list(exclude) or None,
    )
    if seed is None:
        return get_peft_model(model, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)
