"""Every training loss, once. Targets use the metrics' convention: 1 positive, 0 negative, -1 unknown
(ignored).

* ranking (TaI-DPT, data-free):  mean_i sum_{p in P_i, n in N_i} max(0, margin - s_ip + s_in)
* asymmetric (ASL; DualCoOp, PVLR):
      L = -sum_c [ y_c (1 - p_c)^{g+} log p_c + (1 - y_c) p_m^{g-} log(1 - p_m) ],  p_m = max(p_c - clip, 0)
  summed over known labels (DualCoOp's reference) or averaged over the C classes (PVLR's (1/C) sum_c),
  averaged over the batch.
* KCR (PVLR):  mean_c (1 - cos(t^ka_c, t^ca_c))
* order (data-free, Yang et al. eq. 13):  KL(P_H || P_X), P_X = row-softmax over the other classes of
      cos(x_c, x_c') / T for learned class features X and hand-crafted ones H, averaged over classes
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
                    gamma_neg: float = 2.0, clip: float = 0.05, eps: float = 1e-8,
                    class_mean: bool = False) -> torch.Tensor:
    """Asymmetric loss (Ridnik et al. 2021) on probabilities; unknown (-1) targets contribute nothing.
    ``class_mean``: divide the per-image sum by the number of classes C (PVLR's eq.)."""
    known = (targets >= 0).to(probabilities.dtype)
    y = (targets == 1).to(probabilities.dtype)
    p = probabilities.clamp(eps, 1 - eps)
    p_neg = (p - clip).clamp(min=0) if clip > 0 else p
    loss_pos = y * (1 - p).pow(gamma_pos) * torch.log(p)
    loss_neg = (1 - y) * p_neg.pow(gamma_neg) * torch.log((1 - p_neg).clamp(min=eps))
    total = -((loss_pos + loss_neg) * known).sum() / probabilities.shape[0]
    return total / probabilities.shape[-1] if class_mean else total


def kcr_loss(t_knowledge: torch.Tensor, t_context: torch.Tensor) -> torch.Tensor:
    """PVLR's knowledge-to-context regularisation: mean over labels (and batch) of 1 - cos(t^ka_c, t^ca_c);
    (..., C, D) each."""
    return (1 - torch.nn.functional.cosine_similarity(t_knowledge, t_context, dim=-1)).mean()


def order_loss(learned: torch.Tensor, anchor: torch.Tensor, temperature: float) -> torch.Tensor:
    """Keep the learned classes' similarity order close to the hand-crafted prompts' (C, D) each.

    Each class's similarities to the other classes (its own, always 1, is left out) become a distribution by
    a softmax at ``temperature``; the loss is KL(anchor || learned) averaged over classes.
    """
    def log_dist(x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.normalize(x.float(), dim=-1)
        sim = (x @ x.T) / temperature
        eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
        return torch.log_softmax(sim.masked_fill(eye, float("-inf")), dim=-1).masked_fill(eye, 0.0)

    log_p, log_q = log_dist(anchor).detach(), log_dist(learned)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()
