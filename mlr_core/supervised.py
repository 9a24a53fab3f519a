"""One run of an image-supervised method: train on a label budget of the cached trainval features
(:func:`train_run`, the model), then score the cached test split once (:func:`evaluate_run`, the scores for
ensembles and the metrics). Two stages, so an evaluation-only param change retrains nothing; each stage runs
all of a method's runs in one process (:func:`train_runs`, :func:`evaluate_runs`: one start, one model load).

A run is ``<budget>_s<seed>`` (:mod:`mlr_core.budgets`). The validation part carved from trainval is the
validation signal (``val_mAP``) of the budget rule (:mod:`mlr_core.train`): the weights kept are its best;
the test split is never read in training.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mlr_core.budgets import budget_features, load_budget
from mlr_core.cache import FeatureCache
from mlr_core.evaluate import evaluate_method
from mlr_core.io import atomic_write_json, read_learned_meta
from mlr_core.methods.registry import IMAGE_SUPERVISED, build_scorer, get_method, method_module
from mlr_core.calibration import validation_thresholds
from mlr_core.metrics import multilabel_metrics, zero_shot_metrics
from mlr_core.runs import parse_run

METHODS = IMAGE_SUPERVISED


def _tensors(arrays: dict) -> dict[str, torch.Tensor]:
    # features stay in the cache's float16 (half the memory: COCO's dense RN101-448 features are 16 GB so);
    # train.fit casts each batch to float32
    out = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "labels"}
    out["labels"] = torch.from_numpy(arrays["labels"].astype(np.int64))
    return out


def _trainer(method: str):
    if method not in METHODS:
        raise ValueError(f"unknown image-supervised method {method!r}; known: {METHODS}")
    return getattr(method_module(method), get_method(method).trainer)


def method_params(method: str, params):
    isp = params.image_supervised
    return {"dualcoop": lambda: isp.dualcoop, "pvlr": lambda: isp.pvlr, "coop": lambda: isp.coop,
            "coop_dpt": lambda: isp.coop}[method]()


def method_runs(method: str, params) -> list[str]:
    """The runs params list for ``method`` (DualCoOp: its label-budget runs, then its zero-shot runs)."""
    p = method_params(method, params)
    return list(p.runs) + (list(p.zeroshot_runs) if method == "dualcoop" else [])


def train_runs(method: str, clip, params, **paths) -> dict[str, dict]:
    """:func:`train_run` for each of :func:`method_runs`, ``training.workers`` at once
    (:func:`mlr_core.parallel.map_runs`): run name -> its record."""
    from mlr_core.parallel import map_runs

    runs = method_runs(method, params)
    return dict(zip(runs, map_runs(lambda run: train_run(method, run, clip, params, **paths), runs,
                                   workers=params.training.workers, device=clip.device, desc=f"train {method}")))


def evaluate_runs(method: str, clip, params, **paths) -> dict[str, dict]:
    """:func:`evaluate_run` for each of :func:`method_runs`: run name -> its metrics."""
    runs = method_runs(method, params)
    return {run: evaluate_run(method, run, clip, params, **paths)
            for run in tqdm(runs, desc=f"evaluate {method}", unit="run")}


def train_run(method: str, run_name: str, clip, params, *, budgets_dir: str | Path, trainval_path: str | Path,
              views_path: str | Path | None = None, out_dir: str | Path = "data/models",
              plots_dir: str | Path = "plots") -> dict:
    """Train ``method`` on run ``run_name``'s label budget of the trainval cache, plus the budget images'
    augmented views from ``views_path`` (the ``features_views`` cache) when the method's ``views`` param is set
    (not for a ``noaug-`` run).

    Writes ``{out_dir}/{method}/{run}.safetensors`` (the budget's size and the CLIP weights id in its
    metadata) and ``{plots_dir}/train/{method}/{run}.json``; returns the last log entry. The test split is
    not read; the validation part is its images alone (no views). An ``ft-`` run (PVLR) trains on the pixels of
    the budget's images (the ``dataset`` params' files of the images the trainval cache holds), fine-tuning the
    image encoder."""
    run = parse_run(run_name)
    trainval = FeatureCache(trainval_path, expect_fingerprint=clip.fingerprint)
    budget = load_budget(budgets_dir, run.budget)
    part = _part_reader(method, run, trainval, clip, params)
    arrays = part(budget)
    n_images, n_views = len(arrays["labels"]), 0
    if views_path is not None and run.views and method_params(method, params).views:
        views = budget_features(budget, FeatureCache(views_path, expect_fingerprint=clip.fingerprint), views=True)
        n_views = len(views["labels"])
        arrays = {k: np.concatenate([arrays[k], views[k]]) for k in arrays}
    train = _tensors(arrays)
    val = _tensors(part(load_budget(budgets_dir, "val")))

    def evaluate_val(scorer) -> dict:
        if not len(val["labels"]):
            return {}
        s, _ = _score_part(scorer, val)
        return {"val_mAP": round(multilabel_metrics(s.numpy(), val["labels"].numpy(), top_k=())["mAP"], 3)}

    p = method_params(method, params)
    torch.manual_seed(run.seed)
    model, result = _trainer(method)(clip, trainval.classes, train, val, run=run, p=p, training=params.training,
                                     seed=run.seed, evaluate_val=evaluate_val,
                                     **({"variant": method} if method.startswith("coop") else {}))
    model.save(trained_model_path(out_dir, method, run.name),
               extra={"method": method, "run": run.name, "budget": budget.name, "model_weights": clip.weights_id,
                      "train_images": n_images, "train_views": n_views,
                      "known_labels": int((train["labels"][:n_images] >= 0).sum()),
                      "training": result.record()})
    atomic_write_json(Path(plots_dir) / "train" / method / f"{run.name}.json", result.log)
    return result.record()


def evaluate_run(method: str, run_name: str, clip, params, *, budgets_dir: str | Path, test_path: str | Path,
                 trainval_path: str | Path, models_dir: str | Path = "data/models",
                 scores_dir: str | Path = "data/scores", metrics_dir: str | Path = "metrics",
                 plots_dir: str | Path = "plots", classifiers_dir: str | Path = "data/classifiers") -> dict:
    """Score the test cache once with a trained run and write its scores and metrics (evaluation params only:
    changing ``evaluate.threshold`` or ``top_k`` re-runs this, not the training).

    Writes ``{scores_dir}/{method}/{run}.parquet``, ``{metrics_dir}/{method}/{run}.json`` and the plots
    ``{method}/{run}`` under ``plots_dir`` (AP per class, PR curve); a zero-shot run (``zsl-...``) adds the ZSL and
    GZSL metrics over its budget's unseen and seen classes. Per-class thresholds maximising F1 on the validation
    part of trainval give the ``val_thresholds`` metrics (CF1 / OF1 comparable across methods whatever their
    probability's calibration); they are also the decision rule of the run's classifier export
    (``{classifiers_dir}/{method}/{run}.safetensors``)."""
    run = parse_run(run_name)
    test = FeatureCache(test_path, expect_fingerprint=clip.fingerprint)
    path = trained_model_path(models_dir, method, run.name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model (run the train_{method} stage for {run.name})")
    scorer = build_scorer(method, clip, test.classes, params, path)
    meta = read_learned_meta(path)  # what train_run recorded
    ev = params.evaluate
    info = {"run": run.name, "budget": meta.get("budget"), "seed": run.seed,
            "train_images": meta.get("train_images"), "train_views": meta.get("train_views"),
            "known_labels": meta.get("known_labels"),
            **({"image_encoder": "fine-tuned"} if run.finetune else {}),
            "training": meta.get("training")}
    metrics_path = Path(metrics_dir) / method / f"{run.name}.json"
    trainval = FeatureCache(trainval_path, expect_fingerprint=clip.fingerprint)
    val = _tensors(_part_reader(method, run, trainval, clip, params)(load_budget(budgets_dir, "val")))
    with torch.no_grad():
        _, val_probs = _score_part(scorer, val)
    decision = validation_thresholds(val_probs.numpy(), val["labels"].numpy(), default=ev.threshold)
    summary, scores, targets = evaluate_method(
        test, scorer, name=method, threshold=ev.threshold, top_k=ev.top_k, ece_bins=ev.ece_bins, decision=decision,
        classifier_path=Path(classifiers_dir) / method / f"{run.name}.safetensors", run=run.name,
        images=method_module(method).images_by_id(params.dataset, "test", clip.preprocess) if run.finetune else None,
        scores_path=Path(scores_dir) / method / f"{run.name}.parquet", metrics_path=metrics_path,
        plots_dir=plots_dir, plot_name=f"{method}/{run.name}", info=info,
        class_thresholds=np.asarray(decision["values"]))
    if run.kind == "zsl":
        budget = load_budget(budgets_dir, run.budget)
        seen, unseen = budget.info["seen"], budget.info["unseen"]
        zs = zero_shot_metrics(scores, targets, [test.classes.index(c) for c in unseen],
                               [test.classes.index(c) for c in seen], top_k=ev.top_k,
                               zsl_images=method_params(method, params).zsl_images)
        summary.update({part: {k: round(v, 3) if isinstance(v, float) else v for k, v in m.items()}
                        for part, m in zs.items()})
        summary["unseen"] = unseen
        atomic_write_json(metrics_path, summary)
    return summary


def _part_reader(method: str, run, trainval: FeatureCache, clip, params):
    """budget -> its training / validation arrays: the cached features, or for an ``ft-`` run the images' pixels
    (float16, the model's preprocessing; the method module reads them: PVLR is the one with ``ft-`` runs)."""
    if not run.finetune:
        return lambda budget: budget_features(budget, trainval)
    pixels = method_module(method)
    paths = pixels.image_files(params.dataset, "trainval")
    return lambda budget: pixels.budget_images(budget, trainval, paths, clip.preprocess)


def _score_part(scorer, part: dict):
    """(scores, probabilities) of a validation part: its cached features, or its images (``ft-`` runs)."""
    if "images" in part:
        return scorer.score_images(part["images"])
    return scorer(part["global"].float(), part["dense"].float())


def trained_model_path(models_dir: str | Path, method: str, run_name: str) -> Path:
    """Where :func:`train_run` saves a run and the evaluation reads it."""
    return Path(models_dir) / method / f"{run_name}.safetensors"
