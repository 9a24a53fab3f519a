"""Zero-shot CLIP with a hand-crafted prompt, global only or with the DPT local branch.

Global: the classic CLIP zero-shot score of ``template.format(class)``. DPT (TaI-DPT, Guo et al. 2023):
the same prompt also scores every image region (dense features), aggregated by a softmax over regions,
and mixed with the global score (see :mod:`mlr_core.scores`). Nothing is trained.

Thresholded metrics need a probability; zero-shot CLIP has no calibrated per-class one, so we use CLIP's
own: a softmax over classes of the model's logit scale times the cosine-unit score. Compare zero-shot
methods by mAP and top-k, which need no threshold.
"""
from __future__ import annotations

import torch

from mlr_core.models.features import encode_text_features
from mlr_core.scores import ClassScorer


def hand_crafted_text(clip, classnames: list[str], template: str) -> torch.Tensor:
    """(C, D) text features of ``template.format(class)``."""
    with torch.no_grad():
        tokens = clip.tokenizer([template.format(c) for c in classnames]).to(clip.device)
        return encode_text_features(clip.model, tokens).global_.float().cpu()


def zero_shot_scorer(clip, classnames: list[str], *, template: str, scale: float, local_temperature: float | None,
                     local_weight: float | None, use_local: bool) -> ClassScorer:
    """``use_local=False`` (zsclip) needs no local temperature or weight (pass None)."""
    text = hand_crafted_text(clip, classnames, template)
    return ClassScorer(text, text if use_local else None, scale=scale, local_temperature=local_temperature,
                       local_weight=local_weight, probability_scale=float(clip.model.logit_scale.exp().item()))


def build_scorer(method: str, clip, classes: list[str], params, artifact=None) -> ClassScorer:
    """``zsclip`` reads ``evaluate.zeroshot.template`` and ``scale``; ``zsclip_dpt`` also the local branch's
    ``local_temperature`` and ``local_weight``."""
    zs = params.evaluate.zeroshot
    if method == "zsclip":
        return zero_shot_scorer(clip, classes, template=zs.template, scale=zs.scale, local_temperature=None,
                                local_weight=None, use_local=False)
    return zero_shot_scorer(clip, classes, template=zs.template, scale=zs.scale,
                            local_temperature=zs.local_temperature, local_weight=zs.local_weight, use_local=True)
