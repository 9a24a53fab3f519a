"""A self-contained classifier export: everything a method needs at test time except the image encoder, in one
safetensors file that loads without unpickling anything.

Every evaluation stage writes one per run it evaluates (``data/classifiers/<method>/<run>.safetensors``, or
``<method>.safetensors`` for an untrained method): the learned text side precomputed (the class embeddings of
the global and local branches, T2I-PAL's prototypes, DualCoOp's positive / negative class features, PVLR's head
and soft-prompt features, an ensemble's two members), the decision rule (:mod:`mlr_core.calibration`: per-class
thresholds chosen on the validation part of trainval, or top-k, and how it was chosen), the class names, and
the backbone it was trained with (arch, weights, weights id, fingerprint, resolution). ``mlr_core.predict``
applies it to new images; loading with a CLIP whose fingerprint differs is refused.

File layout: the scorer's tensors under kind-specific names, and one JSON document (sorted keys, so the bytes
are reproducible) under the metadata key ``mlr_core.classifier``: ``format`` (:data:`FORMAT`), ``kind`` (a key of
:data:`KINDS`), ``config`` (the scorer's settings), ``method``, ``run``, ``classes``, ``decision``, ``backbone``,
``features`` (the dtype the evaluation's cached features had: predict rounds its features to it, so predict
and evaluation give the same scores) and ``needs_dense``.

Example:
    >>> import torch, tempfile
    >>> from mlr_core.scores import ClassScorer
    >>> scorer = ClassScorer(torch.eye(2, 4), None, scale=4.0, local_temperature=None, local_weight=None,
    ...                      probability_scale=100.0)
    >>> path = tempfile.mkdtemp() + "/c.safetensors"
    >>> path = save_classifier(path, scorer, method="zsclip", run=None, classes=["cat", "dog"],
    ...                        decision={"rule": "top_k", "k": 1, "chosen_on": "fixed"},
    ...                        backbone={"arch": "RN50", "fingerprint": "f00"})
    >>> clf = load_classifier(path)
    >>> clf.method, clf.classes, clf.decision["rule"], type(clf.scorer).__name__
    ('zsclip', ['cat', 'dog'], 'top_k', 'ClassScorer')
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mlr_core.calibration import check_decision
from mlr_core.io import atomic_path

FORMAT = "mlr_core.classifier/1"
META_KEY = "mlr_core.classifier"
#: kind -> (module, scorer class); each class has ``export() -> (tensors, config)`` and
#: ``from_export(tensors, config, clip)``.
KINDS = {
    "class_scorer": ("mlr_core.scores", "ClassScorer"),
    "t2i_pal": ("mlr_core.methods.t2i_pal", "PalScorer"),
    "dualcoop": ("mlr_core.methods.dualcoop", "DualCoOpScorer"),
    "pvlr": ("mlr_core.methods.pvlr", "PvlrScorer"),
    "ensemble": ("mlr_core.methods.ensemble", "EnsembleScorer"),
}
FEATURES_DTYPE = "float16"  # what the feature caches store (mlr_core.cache), hence what evaluation scored


class ClassifierError(ValueError):
    """A classifier file is missing, corrupt, of another format, or does not fit the backbone given."""


def _scorer_class(kind: str):
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module), name)


def scorer_kind(scorer) -> str:
    for kind in KINDS:
        if type(scorer) is _scorer_class(kind):
            return kind
    raise ClassifierError(f"{type(scorer).__name__}: no classifier export for this scorer (known: {', '.join(KINDS)})")


def export_scorer(scorer) -> tuple[str, dict[str, torch.Tensor], dict]:
    """-> (kind, tensors, config) of ``scorer`` (an ensemble exports its members through this)."""
    kind = scorer_kind(scorer)
    tensors, config = scorer.export()
    return kind, tensors, config


def scorer_from_export(kind: str, tensors: dict[str, torch.Tensor], config: dict, clip=None):
    if kind not in KINDS:
        raise ClassifierError(f"unknown classifier kind {kind!r} (known: {', '.join(KINDS)})")
    return _scorer_class(kind).from_export(tensors, config, clip)


@dataclass
class Classifier:
    """A loaded export: ``scorer(global, dense) -> (scores, probabilities)`` and what describes it."""

    scorer: object
    kind: str
    method: str
    run: str | None
    classes: list[str]
    decision: dict
    backbone: dict
    features: str
    path: Path | None = None

    @property
    def needs_dense(self) -> bool:
        return bool(getattr(self.scorer, "needs_dense", False))

    @property
    def needs_images(self) -> bool:
        return bool(getattr(self.scorer, "needs_images", False))

    @property
    def name(self) -> str:
        return self.method if self.run is None else f"{self.method}/{self.run}"


def save_classifier(path: str | Path, scorer, *, method: str, run: str | None, classes: list[str], decision: dict,
                    backbone: dict) -> Path:
    """Write ``scorer`` with its decision rule and backbone as one safetensors file (atomic)."""
    from safetensors.torch import save_file

    check_decision(decision, len(classes), where=f"{method} decision rule")
    kind, tensors, config = export_scorer(scorer)
    meta = {"format": FORMAT, "kind": kind, "config": config, "method": method, "run": run,
            "classes": list(classes), "decision": decision, "backbone": backbone, "features": FEATURES_DTYPE,
            "needs_dense": bool(getattr(scorer, "needs_dense", False))}
    tensors = {k: v.detach().float().cpu().clone().contiguous() for k, v in tensors.items()}  # clone: no shared storage (DPT shares one text)
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return path


def read_classifier_meta(path: str | Path) -> dict:
    """The metadata of a classifier file, checked (tensors not read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ClassifierError(f"{path}: classifier file not found (the evaluation stages write them under "
                              f"data/classifiers/; run `dvc repro` for its method)")
    try:
        with safe_open(str(path), "pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a damaged header
        raise ClassifierError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); the file is "
                              f"corrupt or truncated: re-export it (dvc repro)") from e
    if raw is None:
        raise ClassifierError(f"{path}: a safetensors file without '{META_KEY}' metadata: not a classifier export "
                              f"(a trained run's own file is data/prompts/... or data/models/...; its classifier "
                              f"is under data/classifiers/)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ClassifierError(f"{path}: its '{META_KEY}' metadata is not JSON ({e})") from e
    if meta.get("format") != FORMAT:
        raise ClassifierError(f"{path}: format {meta.get('format')!r}, this version reads {FORMAT!r}")
    missing = [k for k in ("kind", "config", "method", "classes", "decision", "backbone") if k not in meta]
    if missing:
        raise ClassifierError(f"{path}: metadata lacks {missing}")
    try:
        check_decision(meta["decision"], len(meta["classes"]), where=f"{path}: decision")
    except ValueError as e:
        raise ClassifierError(str(e)) from e
    return meta


def check_backbone(meta: dict, clip, path: str | Path = "classifier") -> None:
    """Refuse a CLIP whose fingerprint (weights, resolution, preprocessing) is not the one the classifier
    recorded: its class embeddings live in that model's feature space."""
    want = meta["backbone"].get("fingerprint")
    if want != clip.fingerprint:
        b = meta["backbone"]
        raise ClassifierError(
            f"{path}: trained with backbone {b.get('arch')} ({b.get('pretrained')}, {b.get('image_size')} px, "
            f"fingerprint {want}), given {clip.arch} ({clip.pretrained}, {clip.image_size} px, fingerprint "
            f"{clip.fingerprint}): load the backbone it was trained with")


def load_classifier(path: str | Path, clip=None) -> Classifier:
    """Load a classifier file; with ``clip``, check the backbone first (:func:`check_backbone`)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_classifier_meta(path)
    if clip is not None:
        check_backbone(meta, clip, path)
    try:
        tensors = load_file(str(path))
        scorer = scorer_from_export(meta["kind"], tensors, meta["config"], clip)
    except ClassifierError:
        raise
    except Exception as e:  # noqa: BLE001 - missing / misshapen tensors of a damaged or hand-edited file
        raise ClassifierError(f"{path}: its tensors do not rebuild a {meta['kind']} scorer "
                              f"({type(e).__name__}: {e}): re-export it") from e
    return Classifier(scorer, meta["kind"], meta["method"], meta.get("run"), list(meta["classes"]), meta["decision"],
                      meta["backbone"], meta.get("features", FEATURES_DTYPE), path)
