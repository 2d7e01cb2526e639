"""Where a model runs and in which floating-point type: the device and dtype policy.

``dtype="auto"`` (the command line's default) is :func:`auto_dtype_name`'s rule; the Python API's
default (``None``) is bf16 on CUDA and fp32 on CPU. :func:`cast_like_loaded` and
:func:`adapters_like_base` cast a loaded model the way loading it in a dtype would. Torch-free at import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rewardkit.util import unwrap_peft

if TYPE_CHECKING:
    import torch


def resolve_device(device=None) -> torch.device:
    """``device`` as given; by default this process's GPU (``LOCAL_RANK`` under torchrun / accelerate, so
    every rank works on its own GPU instead of all on cuda:0), else the CPU."""
    import torch

    if device is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % max(1, torch.cuda.device_count()))
    return torch.device(device)


#: ``dtype=`` names rewardkit takes (``auto`` is resolved per device by :func:`auto_dtype_name`)
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: CPU flags (``/proc/cpuinfo``) of hardware bf16 matmuls: AMX tiles (Sapphire Rapids and later Xeons),
#: AVX512-BF16 (Cooper Lake, Zen 4 and later)
FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the OS reports (Linux ``/proc/cpuinfo``); empty where it does not."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[-1].split()}


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX-BF16 or AVX512-BF16), from the OS's
    flags or, where it reports none (macOS, Windows), torch's own probes."""
    if set(FAST_BF16_FLAGS) & cpu_flags():
        return True
    import torch

    probes = (getattr(torch.cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(bool(p()) for p in probes if p is not None)


def auto_dtype_name(device_type: str, cuda_bf16: bool, cpu_fast_bf16: bool) -> str:
    """``dtype="auto"``: bfloat16 on a GPU that computes it natively and on a CPU with hardware bf16
    matmuls (``cpu_fast_bf16``), float32 elsewhere (an old GPU, a CPU without them, other devices)."""
    if device_type == "cuda":
        return "bfloat16" if cuda_bf16 else "float32"
    if device_type == "cpu":
        return "bfloat16" if cpu_fast_bf16 else "float32"
    return "float32"


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """The torch dtype to load in. ``None``: bf16 on CUDA, fp32 on CPU (the Python API's default, which
    parity tests rely on); ``"auto"``: :func:`auto_dtype_name` for this device and hardware (the
    command-line default); a name (``float32``, ``bfloat16``, ``float16``: torch's) or a ``torch.dtype`` as
    given."""
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        name = dtype
        if name == "auto":
            cuda = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
            name = auto_dtype_name(device.type, cuda, device.type == "cpu" and cpu_has_fast_bf16())
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
        return getattr(torch, name)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or a floating torch.dtype, got {dtype!r}")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (as recorded in outputs)."""
    return str(dtype).removeprefix("torch.")


def adapters_like_base(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """For scoring: a peft model's LoRA weights cast in place to ``dtype``, its base weights' dtype, when
    that is a 16-bit float, instead of the float32 peft keeps them in (``autocast_adapter_dtype``); a
    16-bit base with float32 adapters converts every adapted layer's input and output (scoring a LoRA RM
    in bf16 on CPU took ~20% longer that way, docs/scoring.md). Reward heads keep their dtype; training
    loads in float32, where this does nothing."""
    import torch

    if dtype not in (torch.bfloat16, torch.float16) or not hasattr(model, "peft_config"):
        return model
    for name, param in model.named_parameters():
        if "lora_" in name and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    return model


def cast_like_loaded(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast a model in place to ``dtype`` the way loading it in ``dtype`` would: floating parameters
    only (buffers such as rotary ``inv_freq`` keep their dtype, as ``from_pretrained`` leaves them),
    modules the model keeps in float32 stay so, and a peft model's adapters as rewardkit's loaders leave
    them (peft's float32, then :func:`adapters_like_base`)."""
    inner = unwrap_peft(model)
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
    return adapters_like_base(model, dtype)
