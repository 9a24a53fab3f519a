"""Score ensembles, as in the TaI-DPT and T2I-PAL papers: two trained methods' scores, each min-max
normalised per class over the images scored, mixed with a weight,

    s = (1 - w) * minmax(s_base) + w * minmax(s_other)

(TaI-DPT + CoOp-DPT for few-shot, TaI-DPT or T2I-PAL + DualCoOp for partial labels). ``w`` is chosen from the
candidate ``weights`` on the validation part of trainval (both members score it; the best mAP, the first on
ties), never on the test split; the test mix reads the Parquet scores the evaluation stages wrote, so nothing
is retrained. The mixed score lies in [0, 1] and doubles as the probability of the threshold metrics.
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
                           info={"method": "ensemble", "weight": weight, **(info or {}), **origin})


def choose_weight(base: np.ndarray, other: np.ndarray, targets: np.ndarray, weights) -> tuple[float, float]:
    """The candidate weight whose mix has the best mAP on (validation) ``targets`` (the first on ties):
    -> (weight, its mAP)."""
    from mlr_core.metrics import multilabel_metrics

    best = None
    for w in weights:
        m = multilabel_metrics(mix_scores(base, other, w), targets, top_k=())["mAP"]
        if best is None or m > best[1]:
            best = (float(w), float(m))
    return best


def ensemble_runs(clip, params, *, trainval_path: str | Path, test_path: str | Path, budgets_dir: str | Path,
                  prompts_dir: str | Path = "data/prompts", models_dir: str | Path = "data/models",
                  scores_dir: str | Path = "data/scores", metrics_dir: str | Path = "metrics",
                  plots_dir: str | Path = "plots") -> dict[str, dict]:
    """Every ensemble of ``image_supervised.ensemble``: ``partial_base`` + each DualCoOp run, ``fewshot_base`` +
    each run of ``fewshot_method`` (``noaug-`` controls left out). The base's run is the one of the same seed (``s<seed>``), else its first.
    -> name (``<base>+<method>_<run>``) -> metrics."""
    import torch
    from tqdm import tqdm

    from mlr_core.budgets import budget_features, load_budget
    from mlr_core.cache import FeatureCache
    from mlr_core.methods.registry import build_scorer
    from mlr_core.runs import parse_run
    from mlr_core.seeded_runs import artifact_path
    from mlr_core.supervised import trained_model_path

    ep, isp, ev = params.image_supervised.ensemble, params.image_supervised, params.evaluate
    trainval = FeatureCache(trainval_path, expect_fingerprint=clip.fingerprint)
    val = budget_features(load_budget(budgets_dir, "val"), trainval)
    val_global, val_dense = (torch.from_numpy(val[k].astype(np.float32)) for k in ("global", "dense"))

    def val_scores(method: str, artifact: Path) -> np.ndarray:
        s, _ = build_scorer(method, clip, trainval.classes, params, artifact)(val_global, val_dense)
        return s.numpy()

    def base_run(base: str, seed: int) -> str:
        runs = list(getattr(params, base if base != "tai" else "tai_dpt").runs)
        return f"s{seed}" if f"s{seed}" in runs else runs[0]

    # the noaug- controls are not ensembled: they exist to measure the views, not as methods
    pairs = [(ep.partial_base, "dualcoop", run) for run in isp.dualcoop.runs if parse_run(run).views]
    pairs += [(ep.fewshot_base, ep.fewshot_method, run) for run in isp.coop.runs if parse_run(run).views]
    out = {}
    for base, method, run in tqdm(pairs, desc="ensembles", unit="pair"):
        b_run = base_run(base, parse_run(run).seed)
        b_artifact = artifact_path(prompts_dir, base, b_run)
        weight, val_map = choose_weight(val_scores(base, b_artifact),
                                        val_scores(method, trained_model_path(models_dir, method, run)),
                                        val["labels"], ep.weights)
        name = f"{base}+{method}_{run}"
        out[name] = evaluate_ensemble(
            Path(scores_dir) / base / f"{b_run}.parquet", Path(scores_dir) / method / f"{run}.parquet", weight,
            test_path, threshold=ev.threshold, top_k=ev.top_k, metrics_path=Path(metrics_dir) / "ensemble" / f"{name}.json",
            plots_dir=plots_dir, plot_name=f"ensemble/{name}", scores_path=Path(scores_dir) / "ensemble" / f"{name}.parquet",
            info={"base": f"{base}/{b_run}", "other": f"{method}/{run}", "seed": parse_run(run).seed,
                  "weight_val_mAP": round(val_map, 3)})
    return out
