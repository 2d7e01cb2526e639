"""Pure loss functions over reward tensors. Shapes: [B] in, per-example losses [B] out (nats)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
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


def reward_model_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    center_coef: float = 0.0,
) -> torch.Tensor:
    """Scalar training loss: mean BT loss + center_coef * mean (r_c + r_r)^2."""
    loss = bradley_terry_loss(chosen, rejected, margin, label_smoothing).mean()
    if center_coef:
        loss = loss + center_coef * centering_penalty(chosen, rejected).mean()
    return loss


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO-family losses over summed response log-probs (nats), all [B].

    With rho_c = log pi_c - log ref_c, rho_r = log pi_r - log ref_r and h = rho_c - rho_r:

    - ``sigmoid`` (DPO, Rafailov et al.): -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)
      (eps > 0 is conservative DPO);
    - ``ipo`` (Azar et al.): (rho_c / n_c - rho_r / n_r - 1 / (2 beta))^2 with n the response lengths in
      tokens (``chosen_lengths``, ``rejected_lengths``): length-normalised as TRL and the IPO authors do;
    - ``hinge`` (SLiC): max(0, 1 - beta h).

    Label smoothing is defined for ``sigmoid`` only; other losses refuse it. Returns ``(losses [B],
    chosen_rewards [B], rejected_rewards [B])``; rewards are beta * log-ratios (detached), the implicit
    rewards of the policy.
    """
    if label_smoothing and loss_type != "sigmoid":
        raise ValueError(f"label_smoothing is defined for the sigmoid loss only, not {loss_type!r}")
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("the ipo loss needs the response lengths (chosen_lengths, rejected_lengths)")
        per_token = chosen_ratio / chosen_lengths.clamp(min=1) - rejected_ratio / rejected_lengths.clamp(
            min=1
        )
        losses = (per_token - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    else:
        raise ValueError(f"unknown DPO loss {loss_type!r}; use sigmoid, ipo or hinge")
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()
