import math

import pytest
import torch

from rewardkit.train.losses import bradley_terry_loss, centering_penalty, dpo_loss, reward_model_loss


def test_bt_loss_hand_computed():
    c, r = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    # -log sigmoid(2) = log(1 + e^-2); -log sigmoid(-1) = log(1 + e^1)
    expected = torch.tensor([math.log1p(math.exp(-2)), math.log1p(math.exp(1))])
    torch.testing.assert_close(bradley_terry_loss(c, r), expected)
    assert abs(bradley_terry_loss(c, r)[0].item() - 0.12692801104297263) < 1e-6


def test_bt_loss_margin_and_label_smoothing():
    c, r = torch.tensor([2.0]), torch.tensor([0.0])
    assert abs(bradley_terry_loss(c, r, margin=torch.tensor([1.0])).item() - math.log1p(math.exp(-1))) < 1e-6
    # eps = 0.1: 0.9 * log(1 + e^-2) + 0.1 * log(1 + e^2) = 0.3269280110
    assert abs(bradley_terry_loss(c, r, label_smoothing=0.1).item() - 0.32692801104297) < 1e-6


def test_centering_penalty_and_total():
    c, r = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0])
    torch.testing.assert_close(centering_penalty(c, r), torch.tensor([2.25, 1.0]))
    bt = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(3.0))) / 2
    total = reward_model_loss(c, r, center_coef=0.01).item()
    assert abs(total - (bt + 0.01 * (2.25 + 1.0) / 2)) < 1e-6


def test_bt_loss_gradient_is_sigmoid():
    c = torch.tensor([0.3], requires_grad=True)
    bradley_terry_loss(c, torch.tensor([0.0])).sum().backward()
    # d/dc -log sigmoid(c) = -(1 - sigmoid(c))
    assert abs(c.grad.item() + (1 - torch.sigmoid(torch.tensor(0.3)).item())) < 1e-6


def test_dpo_loss_hand_computed():
    pc, pr, rc, rr = (torch.tensor([x]) for x in (-1.0, -3.0, -2.0, -2.0))
    # h = (-1 + 2) - (-3 + 2) = 2; beta = 0.5 -> -log sigmoid(1) = log(1 + e^-1)
    losses, r_c, r_r = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert abs(losses.item() - math.log1p(math.exp(-1))) < 1e-6
    assert (r_c.item(), r_r.item()) == (0.5, -0.5)
    ls, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.2)
    assert abs(ls.item() - (0.8 * math.log1p(math.exp(-1)) + 0.2 * math.log1p(math.exp(1)))) < 1e-6
    # IPO is length-normalised (TRL): rho_c / n_c - rho_r / n_r = 1/2 - (-1)/4 = 0.75; 1/(2 beta) = 1
    n_c, n_r = torch.tensor([2.0]), torch.tensor([4.0])
    ipo = dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo", chosen_lengths=n_c, rejected_lengths=n_r)[0]
    assert abs(ipo.item() - (0.75 - 1) ** 2) < 1e-6
    with pytest.raises(ValueError, match="needs the response lengths"):
        dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo")
    with pytest.raises(ValueError, match="sigmoid loss only"):
        dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="hinge", label_smoothing=0.1)
    assert abs(dpo_loss(pc, pr, rc, rr, beta=0.25, loss_type="hinge")[0].item() - 0.5) < 1e-6
    with pytest.raises(ValueError, match="unknown DPO loss"):
        dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="kto")
