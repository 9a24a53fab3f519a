"""The methods by name: which module implements each, and the one way to get its test-time scorer.

Every method module has ``build_scorer(method, clip, classes, params, artifact)`` (``artifact``: the trained
file, or None for the zero-shot methods); the image-supervised ones also name their training function
(``trainer``). Modules are imported by name on first use, so a stage loads only its own method's code
(and DVC tracks only that file for it: tests/test_pipeline_truth.py reads this table).

The refiners (``refiner=True``: SPARC, class concepts) score nothing themselves: their module's
``build_refiner(params)`` gives the settings with which :mod:`mlr_core.refine` turns a base method's saved
scores into refined ones (:func:`refiner_module`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class Method:
    name: str
    module: str                  # the file that implements it
    trained: bool                # needs an artifact from a training stage
    trainer: str | None = None   # image-supervised methods: the training function in ``module``
    refiner: bool = False        # a training-free refiner of another method's saved scores (``build_refiner``)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("zsclip", "mlr_core.methods.zsclip", trained=False),
    Method("zsclip_dpt", "mlr_core.methods.zsclip", trained=False),
    Method("tai", "mlr_core.methods.tai_dpt", trained=True),
    Method("tai_dpt", "mlr_core.methods.tai_dpt", trained=True),
    Method("datafree", "mlr_core.methods.datafree", trained=True),
    Method("t2i_pal", "mlr_core.methods.t2i_pal", trained=True),
    Method("dualcoop", "mlr_core.methods.dualcoop", trained=True, trainer="train_dualcoop"),
    Method("pvlr", "mlr_core.methods.pvlr", trained=True, trainer="train_pvlr"),
    Method("coop", "mlr_core.methods.coop", trained=True, trainer="train_coop"),
    Method("coop_dpt", "mlr_core.methods.coop", trained=True, trainer="train_coop"),
    Method("sparc", "mlr_core.methods.sparc", trained=False, refiner=True),
    Method("class_concepts", "mlr_core.methods.class_concepts", trained=False, refiner=True),
)}
IMAGE_SUPERVISED = tuple(name for name, m in METHODS.items() if m.trainer)
REFINERS = tuple(name for name, m in METHODS.items() if m.refiner)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def method_module(name: str) -> ModuleType:
    return importlib.import_module(get_method(name).module)


def refiner_module(name: str) -> ModuleType:
    if not get_method(name).refiner:
        raise ValueError(f"{name} is not a refiner; the refiners: {', '.join(REFINERS)}")
    return method_module(name)


def build_scorer(method: str, clip, classes: list[str], params, artifact: str | Path | None = None):
    """The test-time scorer of ``method`` for ``classes`` (``params``: the validated params, or a stage's view
    of them); trained methods load ``artifact``."""
    m = get_method(method)
    if m.refiner:
        raise ValueError(f"{method} is a refiner of another method's scores, not a scorer (mlr_core.refine)")
    if m.trained and artifact is None:
        raise ValueError(f"method {method} is trained: give its trained file")
    artifact = None if artifact is None else Path(artifact)
    return method_module(method).build_scorer(method, clip, classes, params, artifact)


def check_artifact(path: str | Path, meta: dict, classes: list[str], clip) -> None:
    """A trained file fits the evaluation: same classes in the same order, and trained with the same CLIP
    weights (the model's ``weights_id``, recorded at training) as the one scoring now."""
    trained = list(meta.get("classnames", []))
    if trained != list(classes):
        raise ValueError(f"{path} was trained for classes {trained[:5]}..., the test cache has {list(classes)[:5]}...")
    recorded = meta.get("model_weights")
    if recorded != clip.weights_id:
        from mlr_core.cache import CacheMismatchError

        raise CacheMismatchError(
            f"{path} was trained with another model (weights id {recorded}) than the one in params and the test "
            f"cache ({clip.arch}, {clip.pretrained}, weights id {clip.weights_id}): re-run its training stage "
            f"(dvc repro)")
