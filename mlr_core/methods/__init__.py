"""One file per method. :func:`build_scorer` turns a method name into the scorer the evaluation stage runs
over a cached test split."""
from __future__ import annotations

from pathlib import Path

ZERO_SHOT = ("zsclip", "zsclip_dpt")
PROMPT_TUNED = ("tai", "tai_dpt")
T2I_PAL = ("t2i_pal",)
DATA_FREE = ("datafree",)


def _check_classes(path: Path, trained: list[str], classes: list[str]) -> None:
    if trained != list(classes):
        raise ValueError(f"{path} was trained for classes {trained[:5]}..., the test cache has {list(classes)[:5]}...")


def build_scorer(method: str, clip, classes: list[str], params, prompts_dir: str | Path = "data/prompts",
                 name: str | None = None):
    """The scorer of ``method`` for ``classes`` (params: the validated :class:`mlr_core.config.Params`);
    trained methods load ``<prompts_dir>/<name or method>.safetensors`` (``name``: e.g. one seed's run)."""
    if method in ZERO_SHOT:
        from mlr_core.methods.zsclip import zero_shot_scorer

        zs = params.evaluate.zeroshot
        return zero_shot_scorer(clip, classes, template=zs.template, scale=zs.scale,
                                local_temperature=zs.local_temperature, local_weight=zs.local_weight,
                                use_local=method == "zsclip_dpt")
    if method in PROMPT_TUNED:
        from mlr_core.methods.tai_dpt import DoubleGrainedPrompts

        path = Path(prompts_dir) / f"{name or method}.safetensors"
        prompts, _ = DoubleGrainedPrompts.load(path, clip)
        _check_classes(path, prompts.classnames, classes)
        tp = params.tai_dpt
        return prompts.scorer(scale=tp.scale, image_temperature=tp.image_temperature, local_weight=tp.local_weight,
                              probability_scale=float(clip.model.logit_scale.exp().item()))
    if method in DATA_FREE:
        from mlr_core.methods.datafree import HierarchicalPrompts

        path = Path(prompts_dir) / f"{name or method}.safetensors"
        prompts, _ = HierarchicalPrompts.load(path, clip)
        _check_classes(path, prompts.classnames, classes)
        dp = params.datafree
        return prompts.scorer(scale=dp.scale, image_temperature=dp.image_temperature, local_weight=1 - dp.global_weight,
                              probability_scale=float(clip.model.logit_scale.exp().item()))
    if method in T2I_PAL:
        from mlr_core.methods.t2i_pal import T2IPal

        path = Path(prompts_dir) / f"{name or method}.safetensors"
        model, _ = T2IPal.load(path, clip)
        _check_classes(path, model.classnames, classes)
        return model.scorer(local_weight=params.t2i_pal.local_weight,
                            probability_scale=float(clip.model.logit_scale.exp().item()))
    from mlr_core.supervised import load_trained_scorer, split_method_run

    image_supervised = split_method_run(method)  # e.g. dualcoop_partial10_s0, pvlr_full_s0, coop_dpt_shot4_s0
    if image_supervised is not None:
        return load_trained_scorer(*image_supervised, clip, classes, params)
    raise ValueError(f"unknown method {method!r}; known: {ZERO_SHOT + PROMPT_TUNED + T2I_PAL}")
