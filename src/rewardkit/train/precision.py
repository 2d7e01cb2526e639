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
  short-sequence step. On CPU, a bf16 run stores the frozen weights of linear layers in bf16 for its
  duration (embeddings, a tied LM head and norms keep theirs, so the residual stream keeps float32)
  and puts the original tensors back afterwards: :func:`frozen_weights_in`; checkpoints saved
  meanwhile hold the originals (:func:`original_weights`). (On a GPU this would hold the fp32
  originals beside the copies in GPU memory, so it is not done there.)
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
    implementation comes back on leaving, also after an error (it is not part of a saved config).
    Yields how many models were switched."""
    from transformers import PreTrainedModel

    switched: list[tuple[PreTrainedModel, str]] = []
    try:
        if enabled and longest <= EAGER_MAX_TOKENS:
            found = [
                (m, m.config._attn_implementation)
                for m in module.modules()
                if isinstance(m, PreTrainedModel) and getattr(m.config, "_attn_implementation", None)
            ]
            for m, impl in found:
                if impl != "eager":
                    m.set_attn_implementation("eager")
                    switched.append((m, impl))
        yield len(switched)
    finally:
        for m, impl in reversed(switched):
            m.set_attn_implementation(impl)


#: id(parameter) -> (parameter, its original tensor), for every parameter a ``frozen_weights_in``
#: block holds in lower precision (read by :func:`original_weights` when a checkpoint is saved)
_STORED: dict[int, tuple[torch.nn.Parameter, torch.Tensor]] = {}


def _castable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The frozen floating-point weights and biases of ``module``'s linear layers that belong to no
    other kind of layer: the weights autocast would cast at every forward. Embeddings (also an LM head
    tied to them) and norm weights stay as they are, so the residual stream keeps its precision."""
    linear, other = {}, set()
    for m in module.modules():
        for p in m.parameters(recurse=False):
            if isinstance(m, torch.nn.Linear):
                linear[id(p)] = p
            else:
                other.add(id(p))
    return [p for i, p in linear.items() if i not in other and not p.requires_grad and p.is_floating_point()]


@contextlib.contextmanager
def frozen_weights_in(module: torch.nn.Module, dtype: torch.dtype, enabled: bool = True) -> Iterator[int]:
    """Store the frozen weights of ``module``'s linear layers (:func:`_castable`) in ``dtype`` inside
    the block, and put the original tensors (same values, same dtype) back on leaving it, also on an
    error. Trainable parameters, embeddings and norms are untouched. Yields how many were cast."""
    cast: list[int] = []  # ids of this block's entries in _STORED
    try:
        if enabled:
            for p in _castable(module):
                if p.dtype != dtype and id(p) not in _STORED:
                    _STORED[id(p)] = (p, p.data)
                    cast.append(id(p))
                    p.data = p.data.to(dtype)
        yield len(cast)
    finally:
        for i in cast:
            p, original = _STORED.pop(i)
            p.data = original


@contextlib.contextmanager
def original_weights(module: torch.nn.Module) -> Iterator[None]:
    """Inside the block, the parameters of ``module`` that a :func:`frozen_weights_in` block holds in
    lower precision are their originals again (a checkpoint saved during a bf16 CPU run holds the
    weights the run started from, not bf16 copies)."""
    swapped = []
    for p in module.parameters():
        entry = _STORED.get(id(p))
        if entry is not None and entry[0] is p:
            swapped.append((p, p.data))
            p.data = entry[1]
    try:
        yield
    finally:
        for p, low in swapped:
            p.data = low
