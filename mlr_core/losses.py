"""Every training loss, once. Targets use the metrics' convention: 1 positive, 0 negative, -1 unknown
(ignored).

* ranking (TaI-DPT, data-free):  mean_i sum_{p in P_i, n in N_i} max(0, margin - s_ip + s_in)
* asymmetric (ASL; DualCoOp, PVLR):
      L = -sum_c [ y_c (1 - p_c)^{g+} log p_c + (1 - y_c) p_m^{g-} log(1 - p_m) ],  p_m = max(p_c - clip, 0)
  summed over known labels, averaged over the batch.
"""
from __future__ import annotations

import torch


def ranking_loss(scores: torch.Tensor, targets: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Pairwise hinge over (positive, negative) class pairs of each sample; (N, C) scores, (N, C) targets."""
    pos = (targets == 1).to(scores.dtype)
    neg = (targets == 0).to(scores.dtype)
    # hinge[i, p, n] = max(0, margin - s[i, p] + s[i, n])
    hinge = torch.clamp(margin - scores[:, :, None] + scores[:, None, :], min=0)
    return (hinge * pos[:, :, None] * neg[:, None, :]).sum(dim=(1, 2)).mean()


def asymmetric_loss(probabilities: torch.Tensor, targets: torch.Tensor, gamma_pos: float = 1.0,
                    gamma_neg: float = 2.0, clip: float = 0.05, eps: float = 1e-8) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al. 2021) on probabilities; unknown (-1) targets contribute nothing."""
    known = (targets >= 0).to(probabilities.dtype)
    y = (targets == 1).to(probabilities.dtype)
    p = probabilities.clamp(eps, 1 - eps)
    p_neg = (p - clip).clamp(min=0) if clip > 0 else p
    loss_pos = y * (1 - p).pow(gamma_pos) * torch.log(p)
    loss_neg = (1 - y) * p_neg.pow(gamma_neg) * torch.log((1 - p_neg).clamp(min=eps))
    return -((loss_pos + loss_neg) * known).sum() / probabilities.shape[0]
