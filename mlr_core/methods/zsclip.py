"""Zero-shot CLIP with a hand-crafted prompt, global only or with the DPT local branch.

Global: the classic CLIP zero-shot score of ``template.format(class)``. DPT (TaI-DPT, Guo et al. 2023):
the same prompt also scores every image region (dense features), aggregated by a softmax over regions,
and mixed with the global score (see :mod:`mlr_core.scores`). Nothing is trained.

Thresholded metrics need a probability; zero-shot CLIP has no calibrated per-class one, so we use CLIP's
own: a softmax over classes of the model's logit scale times the cosine-unit score. Compare zero-shot
methods by mAP and top-k, which need no threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mlr_core.models.features import encode_text_features
from mlr_core.scores import global_logits, local_logits, mix_global_local


@dataclass
class ZeroShotScorer:
    text: torch.Tensor  # (C, D) class prompt features
    scale: float
    local_temperature: float
    local_weight: float
    use_local: bool
    probability_scale: float  # the model's logit scale (CLIP's softmax temperature)

    needs_dense = property(lambda self: self.use_local)

    @classmethod
    def from_clip(cls, clip, classnames: list[str], template: str, scale: float, local_temperature: float,
                  local_weight: float, use_local: bool) -> "ZeroShotScorer":
        with torch.no_grad():
            tokens = clip.tokenizer([template.format(c) for c in classnames]).to(clip.device)
            text = encode_text_features(clip.model, tokens).global_.float().cpu()
        return cls(text, scale, local_temperature, local_weight, use_local,
                   float(clip.model.logit_scale.exp().item()))

    def __call__(self, image_global: torch.Tensor, dense: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (scores (N, C), probabilities (N, C))."""
        scores = global_logits(image_global, self.text, self.scale)
        if self.use_local:
            local = local_logits(dense, self.text, self.scale, self.local_temperature)
            scores = mix_global_local(scores, local, self.local_weight)
        probs = torch.softmax(scores / self.scale * self.probability_scale, dim=-1)
        return scores, probs
