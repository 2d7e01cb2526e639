"""Device, dtype and tokenizer helpers shared by the model kinds."""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from rewardkit.templating import prepare_tokenizer


def resolve_device(device=None) -> torch.device:
    """``device`` as given; by default this process's GPU (``LOCAL_RANK`` under torchrun / accelerate, so
    every rank works on its own GPU instead of all on cuda:0), else the CPU."""
    if device is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % max(1, torch.cuda.device_count()))
    return torch.device(device)


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmul is hundreds of times slower there), bf16 on CUDA, unless asked."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        try:
            return {
                "float32": torch.float32,
                "fp32": torch.float32,
                "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16,
                "float16": torch.float16,
                "fp16": torch.float16,
            }[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None
    return dtype


def load_tokenizer(path: str | os.PathLike, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code))


@contextmanager
def quiet_transformers():
    """Silence transformers' expected warnings (e.g. a freshly initialised reward head)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def cast_like_loaded(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast a model in place to ``dtype`` the way loading it in ``dtype`` would: floating parameters
    only (buffers such as rotary ``inv_freq`` keep their dtype, as ``from_pretrained`` leaves them),
    modules the model keeps in float32 stay so, and a peft model's adapter weights stay in float32, as
    ``PeftModel.from_pretrained`` keeps them (``autocast_adapter_dtype``)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    keep = set(getattr(inner, "_keep_in_fp32_modules", None) or []) | set(
        getattr(inner, "_keep_in_fp32_modules_strict", None) or []
    )
    for name, param in model.named_parameters():
        if param.is_floating_point() and not any(k in name.split(".") for k in keep):
            param.data = param.data.to(dtype)
    if hasattr(model, "peft_config"):
        from peft.tuners.tuners_utils import cast_adapter_dtype

        for name in model.peft_config:
            cast_adapter_dtype(model, name, autocast_adapter_dtype=True)
    return model
