"""How a training run computes in bf16 (``bf16=True``): autocast, plus two CPU measures.

Measured on the development machine (Sapphire Rapids with AMX-BF16, 2 cores), LoRA training of the demo
model, ``benchmarks/training_profile.py`` (docs/training.md has the tables):

- torch's CPU flash-attention kernel runs its backward about 10x slower in bf16 than in fp32 (0.94 s
  against 0.095 s over 12 short steps), which cancelled bf16's matmul gain. Eager attention (matmuls
  and a float32 softmax, which autograd differentiates as matmuls) is faster than both it and the math
  SDPA backend, forward and backward. On CPU under bf16, the run's models use eager attention while it
  trains (and during DPO's reference pass, so step 0's log-ratios stay exactly zero) when its longest
  sequence has at most ``EAGER_MAX_TOKENS`` tokens: eager attention keeps [batch, heads, L, L]
  weights for the backward pass, so longer runs keep the flash kernel: :func:`attention_for`.
- Under autocast every frozen fp32 weight is cast to bf16 again at every forward (autocast caches
  casts of trainable leaves only); with LoRA that is the whole base model, every step, about 10% of a
  short-sequence step. On CPU, a bf16 run stores the frozen floating-point weights in bf16 for its
  duration and puts the original tensors back afterwards: :func:`frozen_weights_in`. (On a GPU this
  would hold the fp32 originals beside the copies in GPU memory, so it is not done there.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

#: the longest sequence (tokens) a bf16 CPU run trains with eager attention; longer: the flash kernel
EAGER_MAX_TOKENS = 512


def cpu_bf16(bf16: bool, device: torch.device | str) -> bool:
    """Whether the CPU measures apply: a bf16 run on a CPU."""
    return bool(bf16) and torch.device(device).type == "cpu"


@contextlib.contextmanager
def attention_for(module: torch.nn.Module, longest: int, enabled: bool = True) -> Iterator[int]:
    """Inside the block, every Hugging Face model in ``module`` computes attention eagerly, when
    ``enabled`` and ``longest`` (tokens) is at most ``EAGER_MAX_TOKENS``; each model's own
    implementation comes back on leaving (it is not part of a saved config). Yields how many models
    were switched."""
    from transformers import PreTrainedModel

    switched: list[tuple[PreTrainedModel, str]] = []
    if enabled and longest <= EAGER_MAX_TOKENS:
        for m in module.modules():
            impl = getattr(m.config, "_attn_implementation", None) if isinstance(m, PreTrainedModel) else None
            if impl is not None and impl != "eager":
                switched.append((m, impl))
        for m, _ in switched:
            m.set_attn_implementation("eager")
    try:
        yield len(switched)
    finally:
        for m, impl in reversed(switched):
            m.set_attn_implementation(impl)


@contextlib.contextmanager
def frozen_weights_in(module: torch.nn.Module, dtype: torch.dtype, enabled: bool = True) -> Iterator[int]:
    """Store every frozen floating-point parameter of ``module`` in ``dtype`` inside the block, and put
    the original tensors (same values, same dtype) back on leaving it, also on an error. Trainable
    parameters are untouched. Yields how many parameters were cast."""
    saved: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    if enabled:
        for p in module.parameters():  # a tied weight is one parameter, visited once
            if not p.requires_grad and p.is_floating_point() and p.dtype != dtype:
                saved.append((p, p.data))
                p.data = p.data.to(dtype)
    try:
        yield len(saved)
    finally:
        for p, original in saved:
            p.data = original
