"""Evaluate a scorer on a cached test split: stream features, score, compute metrics, write the
metrics JSON (DVC metrics), per-class AP and a precision-recall curve (DVC plots) and the raw scores
(Parquet, for score ensembles that should not retrain anything).

Every metrics file and scores file says what produced it (:func:`provenance`): the model (arch, weights,
fingerprint, resolution) and the dataset (name, root, label policies) the test cache was made from, so an
experiment's table never silently mixes numbers of two models.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from mlr_core.cache import FeatureCache
from mlr_core.calibration import decision_metrics, expected_calibration_error
from mlr_core.io import atomic_path, atomic_write_json
from mlr_core.metrics import MultilabelMetrics, precision_recall_curve_points

SCORES_META_KEY = b"mlr_core"


def provenance(cache: FeatureCache) -> dict:
    """``{"model": {...}, "dataset": {...}}`` of the features in ``cache`` (as its features stage recorded)."""
    m = cache.meta
    return {"model": {k: m.get(k) for k in ("arch", "pretrained", "weights_id", "fingerprint", "image_size")},
            "dataset": m.get("dataset")}


def score_cache(cache: FeatureCache, scorer, batch_rows: int = 256, images=None):
    """-> (image_ids, scores (N, C), probabilities (N, C), targets (N, C)) over the whole cache.

    A scorer that ``needs_images`` (its own fine-tuned image encoder) scores the pixels of the cache's images
    instead of their features: ``images(ids)`` returns them preprocessed."""
    by_pixels = getattr(scorer, "needs_images", False)
    if by_pixels and images is None:
        raise ValueError(f"{type(scorer).__name__} scores images (a fine-tuned image encoder): pass images")
    columns = () if by_pixels else ("global", "dense") if getattr(scorer, "needs_dense", False) else ("global",)
    ids, scores, probs, targets = [], [], [], []
    with torch.no_grad():
        for batch in tqdm(cache.iter_batches(columns, batch_rows), desc=f"score {cache.path.name}",
                          total=-(-len(cache) // batch_rows), unit="batch"):
            if by_pixels:
                s, p = scorer.score_images(images(batch.image_ids))
            else:
                dense = torch.from_numpy(batch.dense.astype(np.float32)) if batch.dense is not None else None
                s, p = scorer(torch.from_numpy(batch.global_.astype(np.float32)), dense)
            ids += batch.image_ids
            scores.append(s.numpy())
            probs.append(p.numpy())
            targets.append(batch.labels)
    return ids, np.concatenate(scores), np.concatenate(probs), np.concatenate(targets)


def write_scores(path: str | Path, image_ids: list[str], classes: list[str], scores: np.ndarray,
                 origin: dict) -> None:
    """Scores (N, C) as Parquet; ``origin`` (:func:`provenance`) and the class names in the file metadata."""
    table = pa.table({"image_id": image_ids,
                      "scores": pa.FixedSizeListArray.from_arrays(pa.array(scores.astype(np.float32).ravel()),
                                                                  scores.shape[1])})
    meta = {"classes": list(classes), **origin}
    table = table.replace_schema_metadata({SCORES_META_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_scores(path: str | Path) -> tuple[list[str], np.ndarray, dict]:
    """-> (image ids, (N, C) float64 scores, metadata: classes, model, dataset) of :func:`write_scores`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scores not found (run the method's evaluation stage first)")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(SCORES_META_KEY)
    if raw is None:
        raise ValueError(f"{path}: not a scores file of this project (no metadata): re-run its evaluation stage")
    meta = json.loads(raw)
    scores = table.column("scores").combine_chunks().values.to_numpy(zero_copy_only=False).reshape(len(table), -1)
    return table.column("image_id").to_pylist(), scores.astype(np.float64), meta


def check_top_k(top_k: list[int], classes: list[str]) -> None:
    """evaluate.top_k must lie within 1..C for a dataset of C classes (checked before any scoring)."""
    bad = [k for k in top_k if not 1 <= k <= len(classes)]
    if bad:
        raise ValueError(f"evaluate.top_k={list(top_k)}: {bad} outside 1..{len(classes)} (the dataset has "
                         f"{len(classes)} classes)")


def evaluate_scores(scores: np.ndarray, probabilities: np.ndarray, targets: np.ndarray, classes: list[str], *,
                    threshold: float, top_k: list[int], ece_bins: int, metrics_path: str | Path,
                    plots_dir: str | Path, plot_name: str, info: dict, class_thresholds: np.ndarray | None = None,
                    decision: dict | None = None, decision_scores: tuple | None = None) -> dict:
    """Compute every metric once and write metrics JSON + plots; return the metrics dict.

    ``ECE`` is the expected calibration error of ``probabilities`` (:mod:`mlr_core.calibration`, ``ece_bins``
    bins). ``class_thresholds`` (one per class, chosen on a validation split: :func:`mlr_core.metrics.f1_thresholds`)
    adds the threshold metrics at them as ``val_thresholds`` (CP, CR, CF1, OP, OR, OF1), beside those at the
    common ``threshold``. ``decision`` (the rule the method's classifier export carries) adds the metrics of the
    labels it predicts as ``decision``, from ``decision_scores`` ((scores, probabilities) of the exported scorer,
    when they differ from these: an ensemble's) or these.

    The plots go to ``{plots_dir}/ap_per_class/{plot_name}.json`` and ``{plots_dir}/pr_curve/{plot_name}.json``:
    one folder per kind of plot, which dvc.yaml declares once (with its template) at the top level."""
    check_top_k(top_k, classes)
    m = MultilabelMetrics(len(classes), threshold=threshold, top_k=tuple(top_k))
    m.update(scores, targets, probabilities)
    result = m.compute()
    ap = result.pop("ap_per_class")
    result["ECE"] = expected_calibration_error(probabilities, targets, ece_bins)
    # undefined without a known label (a user's unlabelled photos as the test split): null, never NaN in JSON
    summary = {**info, **{k: (None if v != v else round(v, 3)) if isinstance(v, float) else v
                          for k, v in result.items()}}
    if class_thresholds is not None:
        at = MultilabelMetrics(len(classes), threshold=class_thresholds, top_k=())
        at.update(scores, targets, probabilities)
        at = at.compute()
        summary["val_thresholds"] = {k: round(at[k], 3) for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")}
    if decision is not None:
        summary["decision"] = decision_metrics(*(decision_scores or (scores, probabilities)), targets, decision)
    atomic_write_json(metrics_path, summary)
    plots_dir = Path(plots_dir)
    atomic_write_json(plots_dir / "ap_per_class" / f"{plot_name}.json",
                      [{"class": c, "AP": None if np.isnan(a) else round(a, 3)} for c, a in zip(classes, ap)])
    atomic_write_json(plots_dir / "pr_curve" / f"{plot_name}.json",
                      [{k: round(v, 5) for k, v in p.items()} for p in precision_recall_curve_points(scores, targets)])
    return summary


def evaluate_method(cache: FeatureCache, scorer, *, name: str, threshold: float, top_k: list[int], ece_bins: int,
                    scores_path: str | Path, metrics_path: str | Path, plots_dir: str | Path,
                    plot_name: str | None = None, info: dict | None = None,
                    class_thresholds: np.ndarray | None = None, images=None, decision: dict | None = None,
                    classifier_path: str | Path | None = None, run: str | None = None
                    ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Score ``cache`` with ``scorer`` once (``images``: see :func:`score_cache`), save the scores, write the
    metrics and plots, and (``classifier_path``) export the scorer with its ``decision`` rule as a self-contained
    classifier (:mod:`mlr_core.classifier`) for ``mlr_core.predict``.

    Returns (metrics, scores, targets). The metrics hold ``method`` (``name``), ``info`` and the cache's
    :func:`provenance`; the plots are named ``plot_name`` (default: ``name``)."""
    check_top_k(top_k, cache.classes)
    ids, scores, probs, targets = score_cache(cache, scorer, images=images)
    origin = provenance(cache)
    write_scores(scores_path, ids, cache.classes, scores, origin)
    summary = evaluate_scores(scores, probs, targets, cache.classes, threshold=threshold, top_k=top_k,
                              ece_bins=ece_bins, metrics_path=metrics_path, plots_dir=plots_dir,
                              plot_name=plot_name or name, info={"method": name, **(info or {}), **origin},
                              class_thresholds=class_thresholds, decision=decision)
    if classifier_path is not None:
        from mlr_core.classifier import save_classifier

        save_classifier(classifier_path, scorer, method=name, run=run, classes=cache.classes, decision=decision,
                        backbone=origin["model"])
    return summary, scores, targets
