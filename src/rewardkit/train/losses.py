"""Pure loss functions over reward tensors. Shapes: [B] in, per-example losses [B] out (nats)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """-log sigmoid(r_c - r_r - m), with label smoothing eps: the preference is flipped with prob. eps.

    ``chosen``, ``rejected``, ``margin``: [B] rewards. Returns [B] losses.
    ``loss = -(1 - eps) * log sigmoid(d) - eps * log sigmoid(-d)`` with ``d = r_c - r_r - m``.
    """
    d = chosen - rejected
    if margin is not None:
        d = d - margin
    loss = -F.logsigmoid(d)
    if label_smoothing:
        loss = (1.0 - label_smoothing) * loss - label_smoothing * F.logsigmoid(-d)
    return loss


def centering_penalty(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """(r_c + r_r)^2 per pair, [B] (Eisenstein et al.): pins the free per-prompt shift of BT rewards to 0."""
    return (chosen + rejected) ** 2


def reward_model_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                      label_smoothing: float = 0.0, center_coef: float = 0.0) -> torch.Tensor:
    """Scalar training loss: mean BT loss + center_coef * mean (r_c + r_r)^2."""
    loss = bradley_terry_loss(chosen, rejected, margin, label_smoothing).mean()
    if center_coef:
        loss = loss + center_coef * centering_penalty(chosen, rejected).mean()
    return loss
