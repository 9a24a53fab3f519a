"""Score ensembles, as in the TaI-DPT and T2I-PAL papers: two trained methods' saved test scores, each min-max
normalised per class over the test images, mixed with a fixed weight,

    s = (1 - w) * minmax(s_base) + w * minmax(s_other)

(TaI-DPT + CoOp-DPT for few-shot, TaI-DPT or T2I-PAL + DualCoOp for partial labels). It reads the Parquet
scores the evaluation stages write (``data/scores/<method>.parquet``), so trying another weight retrains
nothing. The weight is a param, never chosen on the test split. The mixed score lies in [0, 1] and doubles
as the probability of the threshold metrics.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mlr_core.scores import minmax_normalise


def mix_scores(base: np.ndarray, other: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * minmax(base) + weight * minmax(other), per class over images."""
    if base.shape != other.shape:
        raise ValueError(f"score shapes differ: {base.shape} vs {other.shape}")
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    return (1 - weight) * minmax_normalise(base) + weight * minmax_normalise(other)


def ensemble(base_path: str | Path, other_path: str | Path, weight: float) -> tuple[list[str], np.ndarray, dict]:
    """Mix two score files, aligned by image id. Both must score the same images and classes, with features
    of the same model and dataset (a score file records them): -> (image ids, mixed scores, that origin)."""
    from mlr_core.evaluate import read_scores

    ids_a, a, meta_a = read_scores(base_path)
    ids_b, b, meta_b = read_scores(other_path)
    if meta_a["classes"] != meta_b["classes"]:
        raise ValueError(f"{base_path} and {other_path} score different classes")
    for what in ("model", "dataset"):
        if meta_a.get(what) != meta_b.get(what):
            raise ValueError(f"{base_path} and {other_path} were scored on features of different {what}s "
                             f"({meta_a.get(what)} vs {meta_b.get(what)}): re-run both with the same params")
    if set(ids_a) != set(ids_b):
        raise ValueError(f"{base_path} and {other_path} score different images")
    pos = {i: r for r, i in enumerate(ids_b)}
    origin = {k: meta_a[k] for k in ("classes", "model", "dataset") if k in meta_a}
    return ids_a, mix_scores(a, b[[pos[i] for i in ids_a]], weight), origin


def evaluate_ensemble(base_path: str | Path, other_path: str | Path, weight: float, test_cache: str | Path, *,
                      threshold: float, top_k: list[int], metrics_path: str | Path, plots_dir: str | Path,
                      plot_name: str, scores_path: str | Path | None = None, info: dict | None = None) -> dict:
    """Mix, then evaluate against the test cache's labels with the shared metrics (and save the mixed scores)."""
    from mlr_core.cache import FeatureCache
    from mlr_core.evaluate import evaluate_scores, provenance, write_scores

    ids, mixed, origin = ensemble(base_path, other_path, weight)
    classes = origin.pop("classes")
    cache = FeatureCache(test_cache)
    if cache.classes != classes:
        raise ValueError(f"{test_cache} has other classes than the scores")
    if provenance(cache) != origin:
        raise ValueError(f"{base_path} was not scored on {test_cache}'s features (another model or dataset): "
                         f"re-run the evaluation stages (dvc repro)")
    labels = cache.read(())
    pos = {i: r for r, i in enumerate(labels.image_ids)}
    missing = [i for i in ids if i not in pos]
    if missing:
        raise ValueError(f"{len(missing)} scored images are not in {test_cache} (e.g. {missing[0]})")
    targets = labels.labels[[pos[i] for i in ids]]
    if scores_path is not None:
        write_scores(scores_path, ids, classes, mixed, origin)
    return evaluate_scores(mixed, mixed, targets, classes, threshold=threshold, top_k=top_k,
                           metrics_path=metrics_path, plots_dir=plots_dir, plot_name=plot_name,
                           info={"method": "ensemble", "base": Path(base_path).stem, "other": Path(other_path).stem,
                                 "weight": weight, **(info or {}), **origin})
