import math

import torch

from rewardkit.train.losses import bradley_terry_loss, centering_penalty, reward_model_loss


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
