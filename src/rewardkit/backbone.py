"""The backbone forward both model families share: whether a model is a causal decoder, the mask to
give it, and the prefix-shared forward (each prompt once, its KV cache expanded over its responses).

What is read off the hidden states is the kind's: response log-probs in :mod:`rewardkit.logprobs`
(implicit RMs), the reward head in :mod:`rewardkit.models.sequence` (explicit RMs)."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from rewardkit.util import unwrap_peft


def is_causal_decoder(model: nn.Module) -> bool:
    """True when every attention module of ``model`` is causal (decoder LMs; not BERT-style encoders)."""
    flags = {m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)}
    return flags == {True}


def backbone_mask(causal: bool, attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The attention mask to give the backbone: ``None`` for a right-padded batch of a causal model.

    With right padding a real token never attends to a pad (pads only follow it), so the causal mask
    alone gives the same outputs at real positions; SDPA then gets ``is_causal`` and no mask, which on
    CUDA lets it use the flash kernel (it takes no arbitrary mask). On CPU the two cost the same.
    """
    if (
        causal
        and bool((attention_mask[:, :1] == 1).all())
        and bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())
    ):
        return None
    return attention_mask


def can_share_prefix(model: nn.Module) -> bool:
    """Whether a prompt's KV cache can stand in for running it again (:func:`shared_hidden`): a causal
    decoder whose backbone takes a ``cache`` (``past_key_values``) and whose every layer attends to all
    earlier tokens (no sliding-window or linear-attention layers, whose cache holds less)."""
    inner = unwrap_peft(model)
    backbone = getattr(inner, "base_model", None)
    if backbone is None or backbone is inner or not is_causal_decoder(inner):
        return False
    params = inspect.signature(backbone.forward).parameters
    config = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
    layers = set(getattr(config, "layer_types", None) or ["full_attention"])
    sliding = getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True)
    return (
        ("cache" in params or "past_key_values" in params)
        and not getattr(config, "is_encoder_decoder", False)
        and layers == {"full_attention"}
        and not sliding
    )


def shared_hidden(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone hidden states of a :class:`~rewardkit.scoring.SharedBatch`: ``(prefix [G, P, H],
    suffix [N, S, H])``. Each prompt runs once with ``use_cache``; its cache is expanded over its group
    (``batch_select_indices``) and the response tokens run against it, positions continuing the prompt's,
    with the mask of prompt + response (so a shorter prompt's padding is never attended)."""
    inner = unwrap_peft(model)
    backbone = inner.base_model
    name = "cache" if "cache" in inspect.signature(backbone.forward).parameters else "past_key_values"
    p_pos = (batch.prefix_mask.cumsum(-1) - 1).clamp(min=0)
    first = backbone(
        input_ids=batch.prefix_ids,
        attention_mask=backbone_mask(True, batch.prefix_mask),
        position_ids=p_pos,
        use_cache=True,
    )
    cache = getattr(first, name)
    cache.batch_select_indices(batch.group)
    s_pos = batch.prefix_mask.sum(-1)[batch.group, None] + (batch.suffix_mask.cumsum(-1) - 1).clamp(min=0)
    second = backbone(
        input_ids=batch.suffix_ids,
        attention_mask=batch.attention_mask,
        position_ids=s_pos,
        use_cache=True,
        **{name: cache},
    )
    return first.last_hidden_state, second.last_hidden_state
