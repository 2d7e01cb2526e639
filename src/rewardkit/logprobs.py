"""Response log-probabilities without a [batch, seq, vocab] log-softmax.

The backbone runs once; only the hidden states that predict response tokens are gathered, and the
LM head + log-softmax run over them in chunks of ``chunk_size`` rows, so peak memory is a few
``chunk_size x vocab`` floats instead of ``batch x seq x vocab``. The default chunk holds
``CHUNK_ELEMENTS`` logits (32 MB in fp32): ~170 rows for a 49k vocabulary, as fast on CPU as 1024 rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from rewardkit.backbone import backbone_mask, shared_hidden
from rewardkit.errors import ModelError
from rewardkit.util import unwrap_peft

CHUNK_ELEMENTS = 2**23
DEFAULT_CHUNK: int | None = None  # None: CHUNK_ELEMENTS // vocab rows


def response_mask(attention_mask: torch.Tensor, response_start: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: positions t holding response tokens (t >= start, t real, t >= 1 so it has a context)."""
    pos = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    start = response_start.clamp(min=1).unsqueeze(-1)
    return (pos >= start) & attention_mask.bool()


LogitMap = Callable[[torch.Tensor], torch.Tensor]


def logit_map(model: nn.Module) -> LogitMap | None:
    """What a causal LM's forward does to ``lm_head(h)`` before returning logits, or None for nothing.

    Scalings (Granite divides by ``logits_scaling``, HyperCLOVA X multiplies by it, Cohere multiplies by
    ``logit_scale``, MuseSpark by ``output_multiplier``) and then Gemma-style soft-capping
    ``c * tanh(x / c)``. :func:`verify_logits` checks the result against the model's own forward.
    """
    inner = unwrap_peft(model)
    config = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
    kind = str(getattr(inner.config, "model_type", ""))
    scale = 1.0
    if kind.startswith("granite") and getattr(config, "logits_scaling", None):
        scale = 1.0 / float(config.logits_scaling)
    elif kind.startswith("hyperclovax") and getattr(config, "logits_scaling", None):
        scale = float(config.logits_scaling)
    elif isinstance(getattr(inner, "logit_scale", None), (int, float)):
        scale = float(inner.logit_scale)
    elif getattr(config, "output_multiplier", None):
        scale = float(config.output_multiplier)
    cap = getattr(config, "final_logit_softcapping", None)
    if scale == 1.0 and not cap:
        return None

    def apply(logits: torch.Tensor) -> torch.Tensor:
        if scale != 1.0:
            logits = logits * scale
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    return apply


def verify_logits(model: nn.Module, atol: float | None = None) -> None:
    """Check once per model that ``lm_head`` + :func:`logit_map` reproduce the model's own logits on a
    short probe; a model that computes them some other way is refused by name (its implicit rewards
    would be wrong). Costs one forward of 8 tokens."""
    inner = unwrap_peft(model)
    if getattr(inner, "_rewardkit_logits_ok", False):
        return
    head = inner.get_output_embeddings()
    device = head.weight.device
    vocab = head.weight.shape[0]
    ids = (torch.arange(8, device=device) * 7919 % max(vocab - 1, 1)).unsqueeze(0)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits.float()[0]
        hidden = inner.base_model(input_ids=ids, attention_mask=mask).last_hidden_state[0]
        ours = head(hidden).float()
        fn = logit_map(model)
        if fn is not None:
            ours = fn(ours)
    tol = atol if atol is not None else (1e-3 if head.weight.dtype == torch.float32 else 5e-2)
    diff = float((ours - ref).abs().max())
    if not diff <= tol * max(1.0, float(ref.abs().max())):
        raise ModelError(
            f"{type(inner).__name__}: its forward transforms the LM head's logits in a way rewardkit does "
            f"not reproduce (max |difference| {diff:.3g} on a probe); its implicit rewards would be wrong"
        )
    inner._rewardkit_logits_ok = True


def selective_log_softmax(
    hidden: torch.Tensor,
    head: nn.Module,
    targets: torch.Tensor,
    chunk_size: int | None = DEFAULT_CHUNK,
    transform: LogitMap | None = None,
) -> torch.Tensor:
    """log p(targets[i] | hidden[i]) for N rows. ``hidden``: [N, H], ``targets``: [N] -> [N] (float32).

    ``transform``: the model's own logit post-processing (:func:`logit_map`)."""
    if chunk_size is None:
        chunk_size = max(8, CHUNK_ELEMENTS // head.weight.shape[0])
    out = []
    for lo in range(0, hidden.shape[0], chunk_size):
        logits = head(hidden[lo : lo + chunk_size]).float()  # [C, V]
        if transform is not None:
            logits = transform(logits)
        tgt = targets[lo : lo + chunk_size]
        out.append(logits.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)


def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: torch.Tensor,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of response-token log-probs (nats) and response lengths (tokens), both [B].

    ``model``: an HF causal LM (optionally peft-wrapped). ``input_ids``/``attention_mask``: [B, T], left or
    right padded; ``response_start``: [B] index of the first response token in each row.
    """
    inner = unwrap_peft(model)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    hidden = inner.base_model(
        input_ids=input_ids, attention_mask=backbone_mask(True, attention_mask), position_ids=position_ids
    ).last_hidden_state  # [B, T, H]
    mask = response_mask(attention_mask, response_start)  # [B, T], target positions
    rows, cols = mask.nonzero(as_tuple=True)  # the hidden state at t-1 predicts token t
    lp = selective_log_softmax(
        hidden[rows, cols - 1],
        inner.get_output_embeddings(),
        input_ids[rows, cols],
        chunk_size,
        logit_map(model),
    )
    sums = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=lp.device).index_add_(0, rows, lp)
    return sums, mask.sum(-1)


def shared_sequence_logprobs(
    model: nn.Module, batch, chunk_size: int | None = DEFAULT_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sequence_logprobs` of a :class:`~rewardkit.scoring.SharedBatch` (prompt once per group):
    sums of response-token log-probs (nats, float32) and response lengths (tokens), both [N].

    Every real suffix token is a response token; the first is predicted by the prompt's last hidden
    state, the others by the suffix's previous one."""
    inner = unwrap_peft(model)
    prefix, suffix = shared_hidden(model, batch)  # [G, P, H], [N, S, H]
    last = prefix[batch.group, batch.prefix_mask.sum(-1)[batch.group] - 1]  # [N, H]
    before = torch.cat([last[:, None], suffix[:, :-1]], dim=1)  # [N, S, H]: the state predicting each token
    rows, cols = batch.suffix_mask.nonzero(as_tuple=True)
    lp = selective_log_softmax(
        before[rows, cols],
        inner.get_output_embeddings(),
        batch.suffix_ids[rows, cols],
        chunk_size,
        logit_map(model),
    )
    sums = torch.zeros(batch.suffix_ids.shape[0], dtype=torch.float32, device=lp.device).index_add_(
        0, rows, lp
    )
    return sums, batch.suffix_mask.sum(-1)
