"""One file per method. :func:`build_scorer` turns a method name into the scorer the evaluation stage runs
over a cached test split."""
from __future__ import annotations

from pathlib import Path

ZERO_SHOT = ("zsclip", "zsclip_dpt")
PROMPT_TUNED = ("tai", "tai_dpt")


def build_scorer(method: str, clip, classes: list[str], params, prompts_dir: str | Path = "data/prompts"):
    """The scorer of ``method`` for ``classes`` (params: the validated :class:`mlr_core.config.Params`)."""
    if method in ZERO_SHOT:
        from mlr_core.methods.zsclip import zero_shot_scorer

        zs = params.evaluate.zeroshot
        return zero_shot_scorer(clip, classes, template=zs.template, scale=zs.scale,
                                local_temperature=zs.local_temperature, local_weight=zs.local_weight,
                                use_local=method == "zsclip_dpt")
    if method in PROMPT_TUNED:
        from mlr_core.methods.tai_dpt import DoubleGrainedPrompts

        path = Path(prompts_dir) / f"{method}.safetensors"
        prompts, _ = DoubleGrainedPrompts.load(path, clip)
        if prompts.classnames != list(classes):
            raise ValueError(f"{path} was trained for classes {prompts.classnames[:5]}..., "
                             f"the test cache has {list(classes)[:5]}...")
        tp = params.tai_dpt
        return prompts.scorer(scale=tp.scale, image_temperature=tp.image_temperature, local_weight=tp.local_weight,
                              probability_scale=float(clip.model.logit_scale.exp().item()))
    raise ValueError(f"unknown method {method!r}; known: {ZERO_SHOT + PROMPT_TUNED}")
