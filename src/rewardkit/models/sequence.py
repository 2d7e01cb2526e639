"""The explicit reward model's forward: an HF sequence-classification model read where Hugging Face
reads it (the rightmost real token that is not ``config.pad_token_id``), one backbone pass, a float32
head; the same rewards for a prefix-shared batch (each prompt run once, :mod:`rewardkit.scoring`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rewardkit.backbone import backbone_mask, can_share_prefix, is_causal_decoder, shared_hidden
from rewardkit.scoring import SharedBatch
from rewardkit.util import unwrap_peft

HEAD_NAMES = ("score", "classifier")


def reward_index(input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    """[B] position HF reads a sequence-classification reward at: the rightmost real position whose token
    is not ``pad_id`` (every real position when ``pad_id`` is None), 0 if there is none.

    ``input_ids``, ``attention_mask``: [B, T], left or right padded. Equals HF's
    ``(arange(T) * (input_ids != pad_id)).argmax(-1)`` on any batch padded with ``pad_id``, and HF's
    ``-1`` for an unpadded sequence when the config has no pad id.
    """
    keep = attention_mask.bool()
    if pad_id is not None:
        keep = keep & (input_ids != pad_id)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    return (positions * keep).argmax(-1)


def reward_head(model: nn.Module) -> nn.Module | None:
    inner = unwrap_peft(model)
    return next((getattr(inner, n) for n in HEAD_NAMES if hasattr(inner, n)), None)


def _inputs_to_float32(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


class SequenceRewardModule(nn.Module):
    """``forward(input_ids [B,T], attention_mask [B,T]) -> rewards [B]`` (or [B, heads] for a multi-head
    model: one backbone pass, several reward heads) over an HF seq-cls model.

    Decoder models (head called ``score``): the backbone runs once, hidden states are gathered at the
    last real token and only those B vectors go through the head. Encoders (head ``classifier``, pooled
    from the first token) use the model's own forward. This module is what the Trainer trains, so DDP
    sees the whole computation inside one ``forward``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._causal: bool | None = None  # whether the backbone is a causal decoder (checked once)
        self.head_to_float32()

    def head_to_float32(self) -> None:
        """A decoder's reward head (every adapter's copy) in float32 whatever the backbone's dtype (a
        bf16 head rounds rewards to 8 bits), its inputs cast to it (the HF forward still runs)."""
        head = getattr(unwrap_peft(self.model), "score", None)
        if head is None or all(p.dtype == torch.float32 for p in head.parameters()):
            return
        head.float()
        if not getattr(head, "_rewardkit_float32", False):
            head.register_forward_pre_hook(_inputs_to_float32)
            head._rewardkit_float32 = True

    @property
    def config(self):
        return unwrap_peft(self.model).config

    def gradient_checkpointing_enable(self, **kwargs):
        self.model.gradient_checkpointing_enable(**kwargs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> torch.Tensor:
        inner = unwrap_peft(self.model)
        head = getattr(inner, "score", None)
        if head is None:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
            return logits.squeeze(-1) if logits.shape[-1] == 1 else logits
        if self._causal is None:
            self._causal = is_causal_decoder(inner)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = inner.base_model(
            input_ids=input_ids,
            attention_mask=backbone_mask(self._causal, attention_mask),
            position_ids=position_ids,
        ).last_hidden_state  # [B, T, H]
        last = reward_index(input_ids, attention_mask, inner.config.get_text_config().pad_token_id)
        h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # [B, H]
        return self._head(head, h)

    @staticmethod
    def _head(head: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """[B, H] hidden states -> [B] or [B, heads] float32 rewards."""
        weight = next(head.parameters())
        out = head(h.to(weight.dtype)).float()  # [B, heads]
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def can_share_prefix(self) -> bool:
        """Whether :meth:`forward_shared` applies (a decoder whose backbone takes a cache)."""
        return hasattr(unwrap_peft(self.model), "score") and can_share_prefix(self.model)

    def forward_shared(self, batch: SharedBatch) -> torch.Tensor:
        """:meth:`forward`'s rewards for a prefix-shared batch (each prompt run once): read at the same
        token, in the prompt's states when the response holds none but pads (pad == EOS)."""
        inner = unwrap_peft(self.model)
        prefix, suffix = shared_hidden(self.model, batch)  # [G, P, H], [N, S, H]
        at = reward_index(batch.input_ids, batch.attention_mask, inner.config.get_text_config().pad_token_id)
        return self._head(inner.score, shared_states_at(prefix, suffix, batch.group, at))


def shared_states_at(
    prefix: torch.Tensor, suffix: torch.Tensor, group: torch.Tensor, at: torch.Tensor
) -> torch.Tensor:
    """[N, H] hidden states of a prefix-shared batch at positions ``at`` [N] of its concatenated rows
    (:attr:`~rewardkit.scoring.SharedBatch.input_ids`): from ``prefix`` [G, P, H] (row ``group`` [N])
    where ``at < P``, else from ``suffix`` [N, S, H] at ``at - P``."""
    width, rows = prefix.shape[1], torch.arange(suffix.shape[0], device=suffix.device)
    return torch.where(
        (at < width)[:, None], prefix[group, at.clamp(max=width - 1)], suffix[rows, (at - width).clamp(min=0)]
    )
