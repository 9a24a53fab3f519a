"""CoOp (Zhou et al., IJCV 2022) and CoOp-DPT few-shot prompts for multi-label recognition, trained on K-shot
image features, as in the few-shot comparison of the TaI-DPT paper.

The prompts are TaI-DPT's (:class:`mlr_core.methods.tai_dpt.DoubleGrainedPrompts`: a global context, plus a
local one for the DPT variant); only the training data differs: image features of a K-shot budget instead of
caption features. Same scoring and the same ranking loss as TaI-DPT, so the two are directly comparable and
their scores mix in an ensemble:

    s_g[i, c] = scale * cos(g_i, t^g_c)
    s_l[i, c] = sum_j softmax_j(T_image * cos(d_ij, t^l_c)) * scale * cos(d_ij, t^l_c)   (image regions j)
    L = ranking(s_g, y) [+ ranking(s_l, y)]      (unknown labels are neither positives nor negatives)

At test, final = (1 - w) * s_g + w * s_l for CoOp-DPT, s_g for CoOp.
"""
from __future__ import annotations

import torch

from mlr_core.losses import ranking_loss
from mlr_core.methods.tai_dpt import DoubleGrainedPrompts, PromptConfig
from mlr_core.scores import global_logits, local_logits


def image_ranking_loss(prompts: DoubleGrainedPrompts, batch: dict, *, scale: float, image_temperature: float,
                       margin: float) -> torch.Tensor:
    """Ranking loss of image features: ``batch`` holds ``global`` (B, D), ``dense`` (B, J, D), ``labels``."""
    t_global, t_local = prompts.class_features()
    loss = ranking_loss(global_logits(batch["global"], t_global, scale), batch["labels"], margin)
    if t_local is not None:
        loss = loss + ranking_loss(local_logits(batch["dense"], t_local, scale, image_temperature), batch["labels"],
                                   margin)
    return loss


class CoopModel:
    """Trained CoOp prompts with their test-time scoring settings."""

    def __init__(self, prompts: DoubleGrainedPrompts, *, scale: float, image_temperature: float,
                 local_weight: float, probability_scale: float):
        self.prompts = prompts
        self.kw = dict(scale=scale, image_temperature=image_temperature, local_weight=local_weight,
                       probability_scale=probability_scale)

    def scorer(self):
        return self.prompts.scorer(**self.kw)

    def save(self, path, extra: dict | None = None) -> None:
        self.prompts.save(path, extra=extra)


def train_coop(clip, classes: list[str], train: dict, val: dict, *, run, p, training, seed: int, evaluate_val,
               variant: str = "coop"):
    """Fit CoOp (``variant="coop"``, global prompt) or CoOp-DPT on the K-shot ``train`` tensors; ``p``: the coop
    params. Returns (model, FitResult), the model at its best validation mAP."""
    from mlr_core.train import OptimConfig, fit

    torch.manual_seed(seed)
    prompts = DoubleGrainedPrompts(clip, classes, PromptConfig(p.n_ctx, p.class_specific, None, variant == "coop_dpt"),
                                   seed=seed)
    model = CoopModel(prompts, scale=p.scale, image_temperature=p.image_temperature, local_weight=p.local_weight,
                      probability_scale=float(clip.model.logit_scale.exp().item()))
    result = fit(prompts, train,
                 lambda b: image_ranking_loss(prompts, b, scale=p.scale, image_temperature=p.image_temperature,
                                              margin=p.margin),
                 OptimConfig.from_params(p, training), seed=seed, desc=f"train {variant} {run.name}",
                 validate=lambda: evaluate_val(model.scorer()), select="val_mAP")
    return model, result


def build_scorer(method: str, clip, classes: list[str], params, artifact):
    """A trained CoOp / CoOp-DPT run, scored with ``image_supervised.coop.scale``, ``image_temperature`` and
    ``local_weight``."""
    from mlr_core.methods.registry import check_artifact

    prompts, meta = DoubleGrainedPrompts.load(artifact, clip)
    check_artifact(artifact, meta, classes, clip)
    p = params.image_supervised.coop
    return CoopModel(prompts, scale=p.scale, image_temperature=p.image_temperature, local_weight=p.local_weight,
                     probability_scale=float(clip.model.logit_scale.exp().item())).scorer()
