"""Class scores from image (or text-as-image) features and class text features: the one home of the
global / local (DPT) scoring every method shares.

With unit-normalised features, ``cos`` is cosine similarity and

* global logit:  s_g[i, c] = scale * cos(g_i, t_c)
* local logit:   s_l[i, c] = sum_j softmax_j(T * cos(d_ij, t_c)) * scale * cos(d_ij, t_c)
  (j over image regions or text tokens, padding masked; T = 40 on image regions, 50 on text tokens in the
  TaI-DPT reference)
* DPT score:     (1 - w) * s_g + w * s_l   (w = 0.5 in the reference)
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def global_logits(image_global: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """(N, D), (C, D) -> (N, C)."""
    return scale * F.normalize(image_global.float(), dim=-1) @ F.normalize(text.float(), dim=-1).T


def class_heatmap(dense: torch.Tensor, text: torch.Tensor, temperature: float,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The class-wise heat map over local features: (N, C, J) weights softmax_j(T * cos(d_ij, t_c)) (zero at
    masked positions) and the (N, C, J) cosines."""
    cos = torch.einsum("njd,cd->ncj", F.normalize(dense.float(), dim=-1), F.normalize(text.float(), dim=-1))
    weights_in = temperature * cos
    if mask is not None:
        weights_in = weights_in.masked_fill(~mask[:, None, :], float("-inf"))
    return torch.softmax(weights_in, dim=-1), cos


def local_logits(dense: torch.Tensor, text: torch.Tensor, scale: float, temperature: float,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N, J, D) local features, (C, D) text, optional (N, J) bool mask of valid positions -> (N, C)."""
    heat, cos = class_heatmap(dense, text, temperature, mask)
    return (heat * scale * cos).sum(-1)


def mix_global_local(global_: torch.Tensor, local: torch.Tensor, local_weight: float) -> torch.Tensor:
    return (1 - local_weight) * global_ + local_weight * local


def minmax_normalise(scores: np.ndarray) -> np.ndarray:
    """Per class over images, to [0, 1]: how the papers put two methods' scores on one scale before mixing."""
    lo, hi = scores.min(axis=0, keepdims=True), scores.max(axis=0, keepdims=True)
    return (scores - lo) / np.maximum(hi - lo, 1e-12)


class ClassScorer:
    """Scores images (or text-as-image features) against class text features, global and optionally local.

    ``text_global`` scores global features; ``text_local`` (DPT: a second, separately learned set of class
    features, or the same one for hand-crafted prompts) scores the local ones. ``__call__`` returns
    ``(scores, probabilities)``; the probability is a softmax over classes at the CLIP model's logit scale
    (``probability_scale``), the zero-shot convention, unless ``sigmoid=True``.
    """

    def __init__(self, text_global: torch.Tensor, text_local: torch.Tensor | None, *, scale: float,
                 local_temperature: float, local_weight: float, probability_scale: float, sigmoid: bool = False):
        self.text_global, self.text_local = text_global.float(), None if text_local is None else text_local.float()
        self.scale, self.local_temperature, self.local_weight = scale, local_temperature, local_weight
        self.probability_scale, self.sigmoid = probability_scale, sigmoid

    @property
    def needs_dense(self) -> bool:
        return self.text_local is not None

    def __call__(self, image_global: torch.Tensor, dense: torch.Tensor | None,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.global_scores(image_global)
        if self.text_local is not None:
            scores = mix_global_local(scores, self.local_scores(dense, mask), self.local_weight)
        probs = torch.sigmoid(scores) if self.sigmoid else torch.softmax(scores / self.scale * self.probability_scale, -1)
        return scores, probs

    def global_scores(self, image_global: torch.Tensor) -> torch.Tensor:
        """The global logits; methods with an adapter on the global branch override this."""
        return global_logits(image_global, self.text_global, self.scale)

    def local_scores(self, dense: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The local (region) logits; methods with an adapter on the local branch override this."""
        return local_logits(dense, self.text_local, self.scale, self.local_temperature, mask)

    # ---- the classifier export (mlr_core.classifier): tensors + a JSON config, never a pickle ----
    def export(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {"text_global": self.text_global}
        if self.text_local is not None:
            tensors["text_local"] = self.text_local
        return tensors, {"scale": self.scale, "local_temperature": self.local_temperature,
                         "local_weight": self.local_weight, "probability_scale": self.probability_scale,
                         "sigmoid": self.sigmoid}

    @classmethod
    def from_export(cls, tensors: dict[str, torch.Tensor], config: dict, clip=None) -> "ClassScorer":
        return cls(tensors["text_global"], tensors.get("text_local"), **config)
