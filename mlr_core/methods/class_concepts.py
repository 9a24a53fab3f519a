r"""Class concepts from contextual texts (OpenReview submission "Class Concept Representation from Contextual
Texts for Training-Free Multi-Label Recognition"): a training-free refiner of any method's class scores.

The text bank :math:`T` (M, D): the cached EOT features of the descriptions the pipeline already has (mined
captions, LLM sentences), unit-normalised, with the classes the noun filter found in each (:math:`Y`, M x C).

* **Class concept**: :math:`k_c = \mathrm{normalise}(\frac{1}{|M_c|}\sum_{m \in M_c} T_m)`, the mean of the
  descriptions that mention c (:math:`M_c = \{m : Y_{mc} = 1\}`; a class no text mentions gets the zero
  vector, so a zero concept score).
* **Feature refinement** by attention over the bank, in G groups of it visited in turn (a seeded order):
  :math:`q_0 = x`, :math:`q_g = \mathrm{normalise}(\mathrm{softmax}_m(\cos(q_{g-1}, T^{(g)}_m) / \alpha)\, T^{(g)})`,
  refined :math:`x' = q_G`, for the image's global feature (:math:`1/\alpha` = ``global_temperature``) and each
  region feature (``local_temperature``).
* **Concept score**: :math:`s_{ic} = \cos(g'_i, k_c) + \sum_j \mathrm{softmax}_j(\tau \cos(d'_{ij}, k_c))
  \cos(d'_{ij}, k_c)` (:mod:`mlr_core.scores`' global and local logits at scale 1, :math:`\tau` =
  ``pool_temperature``).
* **Logit ensemble** with the base scores :math:`E`, both in cosine units: :math:`r = (1 - w)\, E / \lambda + w\, s`
  (:math:`\lambda`: the base method's logit scale, e.g. ``tai_dpt.scale``; w = 0.5). Per image only: nothing is
  taken across images (not transductive).

The ablations (:data:`VARIANTS`): the concepts without the feature refinement, a seeded part of the bank,
the bank in several groups, and the concept score alone (w = 1: no base).

Example:
    >>> import torch
    >>> g = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    >>> bank, labels = torch.randn(10, 8), torch.tensor([[1, 0], [0, 1]] * 5)
    >>> k = class_concepts(bank, labels)
    >>> s = concept_scores(g, None, bank, k, ConceptConfig(refine=False))
    >>> bool(torch.allclose(s, g @ k.T))      # without refinement and regions: the cosine to the concept
    True
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from mlr_core.scores import global_logits, local_logits

VARIANTS: dict[str, dict] = {
    "all": {},
    "concept_only": {"refine": False},
    "bank10": {"bank_fraction": 0.1},
    "bank1": {"bank_fraction": 0.01},
    "groups4": {"bank_groups": 4},
    "alone": {"weight": 1.0},
}


@dataclass(frozen=True)
class ConceptConfig:
    refine: bool = True
    global_temperature: float = 60.0   # 1 / alpha of the global refinement
    local_temperature: float = 30.0    # 1 / alpha of the region refinement
    pool_temperature: float = 40.0     # softmax over regions of the local concept cosines
    bank_groups: int = 1
    bank_fraction: float = 1.0
    weight: float = 0.5                # w of the ensemble with the base
    seed: int = 0                      # the bank's part and group order

    def variant(self, name: str) -> "ConceptConfig":
        if name not in VARIANTS:
            raise ValueError(f"unknown class-concept variant {name!r}; known: {', '.join(VARIANTS)}")
        return replace(self, **VARIANTS[name])


def class_concepts(bank: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(M, D) text features, (M, C) labels -> (C, D) unit class concepts (zero for a class without text)."""
    y = (labels > 0).float()
    sums = y.T @ F.normalize(bank.float(), dim=-1)
    return F.normalize(sums / y.sum(0).clamp(min=1)[:, None], dim=-1)


def bank_subset(n: int, fraction: float, seed: int) -> torch.Tensor:
    """The rows of a seeded ``fraction`` of an n-row bank (all, in order, at 1.0)."""
    if fraction >= 1.0:
        return torch.arange(n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:max(1, int(round(fraction * n)))].sort().values


def refine_features(x: torch.Tensor, bank: torch.Tensor, temperature: float, groups: int, seed: int,
                    batch: int = 4096) -> torch.Tensor:
    """(..., D) features attended over the (M, D) bank in ``groups`` seeded groups, in turn -> (..., D) unit."""
    bank = F.normalize(bank.float(), dim=-1)
    order = torch.randperm(len(bank), generator=torch.Generator().manual_seed(seed)) if groups > 1 else None
    parts = [bank] if order is None else [bank[i] for i in order.tensor_split(groups)]
    shape = x.shape
    q = F.normalize(x.float().reshape(-1, shape[-1]), dim=-1)
    out = []
    for rows in q.split(batch):
        for part in parts:
            rows = F.normalize(torch.softmax(temperature * rows @ part.T, dim=-1) @ part, dim=-1)
        out.append(rows)
    return torch.cat(out).reshape(shape)


def concept_scores(image_global: torch.Tensor, dense: torch.Tensor | None, bank: torch.Tensor,
                   concepts: torch.Tensor, cfg: ConceptConfig) -> torch.Tensor:
    """(N, C) concept scores of (N, D) global and (N, J, D) region features (None: global only)."""
    g, d = image_global.float(), None if dense is None else dense.float()
    if cfg.refine:
        g = refine_features(g, bank, cfg.global_temperature, cfg.bank_groups, cfg.seed)
        d = None if d is None else refine_features(d, bank, cfg.local_temperature, cfg.bank_groups, cfg.seed)
    s = global_logits(g, concepts, 1.0)
    if d is not None:
        s = s + local_logits(d, concepts, 1.0, cfg.pool_temperature)
    return s


def bank_concept_scores(image_global: torch.Tensor, dense: torch.Tensor | None, bank: torch.Tensor,
                        bank_labels: torch.Tensor, cfg: ConceptConfig) -> np.ndarray:
    """(N, C) concept scores with the concepts and the refinement from the ``cfg.bank_fraction`` part of the
    (M, D) bank and its (M, C) labels."""
    rows = bank_subset(len(bank), cfg.bank_fraction, cfg.seed)
    bank, bank_labels = bank[rows], bank_labels[rows]
    return concept_scores(image_global, dense, bank, class_concepts(bank, bank_labels), cfg).double().numpy()


def logit_ensemble(base: np.ndarray, base_scale: float, concept: np.ndarray, weight: float) -> np.ndarray:
    """(1 - w) * base / base_scale + w * concept: the base's logits (logit scale ``base_scale``) and the
    concept scores in cosine units."""
    return (1 - weight) * np.asarray(base, np.float64) / base_scale + weight * np.asarray(concept, np.float64)


def build_refiner(params):
    """The stage's settings from ``refine.concepts``."""
    cp = params.refine.concepts
    return ConceptConfig(global_temperature=cp.global_temperature, local_temperature=cp.local_temperature,
                         pool_temperature=cp.pool_temperature, bank_groups=cp.bank_groups, weight=cp.weight,
                         seed=cp.seed)
