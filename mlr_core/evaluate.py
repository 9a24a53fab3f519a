"""Evaluate a scorer on a cached test split: stream features, score, compute metrics, write the
metrics JSON (DVC metrics), per-class AP and a precision-recall curve (DVC plots) and the raw scores
(Parquet, for score ensembles that should not retrain anything)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from mlr_core.cache import FeatureCache
from mlr_core.io import atomic_path, atomic_write_json
from mlr_core.metrics import MultilabelMetrics, precision_recall_curve_points


def score_cache(cache: FeatureCache, scorer, batch_rows: int = 256):
    """-> (image_ids, scores (N, C), probabilities (N, C), targets (N, C)) over the whole cache."""
    columns = ("global", "dense") if getattr(scorer, "needs_dense", False) else ("global",)
    ids, scores, probs, targets = [], [], [], []
    with torch.no_grad():
        for batch in tqdm(cache.iter_batches(columns, batch_rows), desc=f"score {cache.path.name}",
                          total=-(-len(cache) // batch_rows), unit="batch"):
            dense = torch.from_numpy(batch.dense.astype(np.float32)) if batch.dense is not None else None
            s, p = scorer(torch.from_numpy(batch.global_.astype(np.float32)), dense)
            ids += batch.image_ids
            scores.append(s.numpy())
            probs.append(p.numpy())
            targets.append(batch.labels)
    return ids, np.concatenate(scores), np.concatenate(probs), np.concatenate(targets)


def write_scores(path: str | Path, image_ids: list[str], classes: list[str], scores: np.ndarray) -> None:
    table = pa.table({"image_id": image_ids,
                      "scores": pa.FixedSizeListArray.from_arrays(pa.array(scores.astype(np.float32).ravel()),
                                                                  scores.shape[1])})
    table = table.replace_schema_metadata({b"classes": "\n".join(classes).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def evaluate_scores(scores: np.ndarray, probabilities: np.ndarray, targets: np.ndarray, classes: list[str], *,
                    threshold: float, top_k: list[int], metrics_path: str | Path, plots_dir: str | Path,
                    info: dict) -> dict:
    """Compute every metric once and write metrics JSON + plots; return the metrics dict."""
    m = MultilabelMetrics(len(classes), threshold=threshold, top_k=tuple(top_k))
    m.update(scores, targets, probabilities)
    result = m.compute()
    ap = result.pop("ap_per_class")
    summary = {**info, **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}}
    atomic_write_json(metrics_path, summary)
    plots_dir = Path(plots_dir)
    atomic_write_json(plots_dir / "ap_per_class.json",
                      [{"class": c, "AP": None if np.isnan(a) else round(a, 3)} for c, a in zip(classes, ap)])
    atomic_write_json(plots_dir / "pr_curve.json",
                      [{k: round(v, 5) for k, v in p.items()} for p in precision_recall_curve_points(scores, targets)])
    return summary
