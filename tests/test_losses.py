import itertools

import torch

from mlr_core.losses import asymmetric_loss, ranking_loss


def test_ranking_loss_matches_pairwise_definition():
    torch.manual_seed(0)
    s = torch.randn(5, 6) * 2
    y = torch.randint(0, 2, (5, 6))
    y[0, 2] = -1  # unknown: in no pair
    ref = 0.0
    for i in range(5):
        for p, n in itertools.product(range(6), range(6)):
            if y[i, p] == 1 and y[i, n] == 0:
                ref += max(0.0, 1.0 - s[i, p].item() + s[i, n].item())
    assert torch.isclose(ranking_loss(s, y, margin=1.0), torch.tensor(ref / 5), atol=1e-5)


def test_ranking_loss_is_zero_when_positives_lead_by_the_margin():
    y = torch.tensor([[1, 0, 0, 1]])
    s = torch.tensor([[3.0, 1.0, 0.5, 2.1]])
    assert ranking_loss(s, y, margin=1.0).item() == 0.0


def test_asymmetric_loss_matches_formula_and_ignores_unknown():
    torch.manual_seed(1)
    p = torch.rand(4, 5) * 0.98 + 0.01
    y = torch.randint(0, 2, (4, 5))
    y[1, 1] = -1
    gp, gn, clip = 1.0, 2.0, 0.05
    ref = 0.0
    for i in range(4):
        for c in range(5):
            if y[i, c] == 1:
                ref -= (1 - p[i, c]) ** gp * torch.log(p[i, c])
            elif y[i, c] == 0:
                pm = torch.clamp(p[i, c] - clip, min=0)
                ref -= pm ** gn * torch.log(1 - pm)
    assert torch.isclose(asymmetric_loss(p, y, gp, gn, clip), ref / 4, atol=1e-5)
