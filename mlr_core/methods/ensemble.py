"""Score ensembles, as in the TaI-DPT and T2I-PAL papers: two trained methods' scores, each min-max
normalised per class over the images scored, mixed with a weight,

    s = (1 - w) * minmax(s_base) + w * minmax(s_other)

(TaI-DPT + CoOp-DPT for few-shot, TaI-DPT or T2I-PAL + DualCoOp for partial labels). ``w`` is chosen from the
candidate ``weights`` on the validation part of trainval (both members score it; the best mAP, the first on
ties), never on the test split; the test mix reads the Parquet scores the evaluation stages wrote, so nothing
is retrained. The mixed score lies in [0, 1] and doubles as the probability of the threshold metrics.

The exported classifier (:class:`EnsembleScorer`) cannot min-max over the images it is given (an image's score
would depend on the others in its batch): it normalises each member with the per-class range that member had on
the validation part of trainval (labels unused), and its decision rule is per-class thresholds chosen on that
part. Its test metrics are in the ensemble's metrics under ``decision``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mlr_core.scores import minmax_normalise


def mix_scores(base: np.ndarray, other: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * minmax(base) + weight * minmax(other), per class over images."""
    if base.shape != other.shape:
        raise ValueError(f"score shapes differ: {base.shape} vs {other.shape}")
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    return (1 - weight) * minmax_normalise(base) + weight * minmax_normalise(other)


class EnsembleScorer:
    """(1 - w) * norm_b(base) + w * norm_o(other), ``norm`` the per-class min-max map of each member's range on a
    reference set (``ranges``: (4, C) rows base min, base max, other min, other max); the probability is the mix
    clipped to [0, 1]."""

    def __init__(self, base, other, weight: float, ranges: torch.Tensor):
        if getattr(base, "needs_images", False) or getattr(other, "needs_images", False):
            raise ValueError("an ensemble member with a fine-tuned image encoder cannot be mixed on cached features")
        self.base, self.other, self.weight, self.ranges = base, other, float(weight), ranges.float()

    @property
    def needs_dense(self) -> bool:
        return bool(getattr(self.base, "needs_dense", False) or getattr(self.other, "needs_dense", False))

    @staticmethod
    def member_ranges(base_scores: np.ndarray, other_scores: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([base_scores.min(0), base_scores.max(0), other_scores.min(0),
                                          other_scores.max(0)]).astype(np.float32))

    def __call__(self, image_global, dense, mask=None):
        r = self.ranges
        sb, so = self.base(image_global, dense)[0], self.other(image_global, dense)[0]
        mixed = ((1 - self.weight) * (sb - r[0]) / (r[1] - r[0]).clamp_min(1e-12)
                 + self.weight * (so - r[2]) / (r[3] - r[2]).clamp_min(1e-12))
        return mixed, mixed.clamp(0, 1)

    def export(self):
        from mlr_core.classifier import export_scorer

        tensors, config = {"ranges": self.ranges}, {"weight": self.weight}
        for role, member in (("base", self.base), ("other", self.other)):
            kind, t, c = export_scorer(member)
            tensors.update({f"{role}.{k}": v for k, v in t.items()})
            config[role] = {"kind": kind, "config": c}
        return tensors, config

    @classmethod
    def from_export(cls, tensors, config, clip=None) -> "EnsembleScorer":
        from mlr_core.classifier import scorer_from_export

        members = [scorer_from_export(config[role]["kind"],
                                      {k[len(role) + 1:]: v for k, v in tensors.items() if k.startswith(role + ".")},
                                      config[role]["config"], clip) for role in ("base", "other")]
        return cls(*members, config["weight"], tensors["ranges"])


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
                      threshold: float, top_k: list[int], ece_bins: int, metrics_path: str | Path, plots_dir: str | Path,
                      plot_name: str, scores_path: str | Path | None = None, info: dict | None = None,
                      exported=None, decision: dict | None = None) -> dict:
    """Mix, then evaluate against the test cache's labels with the shared metrics (and save the mixed scores).
    ``exported`` (an :class:`EnsembleScorer`) with its ``decision`` rule adds the metrics of the labels that
    classifier predicts on the test images (``decision``)."""
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
    decision_scores = None
    if exported is not None:
        from mlr_core.evaluate import score_cache

        e_ids, e_scores, e_probs, _ = score_cache(cache, exported)
        e_pos = {i: r for r, i in enumerate(e_ids)}
        rows = [e_pos[i] for i in ids]
        decision_scores = (e_scores[rows], e_probs[rows])
    return evaluate_scores(mixed, mixed, targets, classes, threshold=threshold, top_k=top_k, ece_bins=ece_bins,
                           metrics_path=metrics_path, plots_dir=plots_dir, plot_name=plot_name,
                           info={"method": "ensemble", "weight": weight, **(info or {}), **origin},
                           decision=decision, decision_scores=decision_scores)


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
                  plots_dir: str | Path = "plots", classifiers_dir: str | Path = "data/classifiers") -> dict[str, dict]:
    """Every ensemble of ``image_supervised.ensemble``: ``partial_base`` + each DualCoOp run, ``fewshot_base`` +
    each run of ``fewshot_method`` (``noaug-`` controls left out). The base's run is the one of the same seed (``s<seed>``), else its first.
    Each is also exported as a classifier (:class:`EnsembleScorer`, ``{classifiers_dir}/ensemble/<name>.safetensors``).
    -> name (``<base>+<method>_<run>``) -> metrics."""
    from tqdm import tqdm

    from mlr_core.budgets import budget_features, load_budget
    from mlr_core.cache import FeatureCache
    from mlr_core.calibration import validation_thresholds
    from mlr_core.classifier import save_classifier
    from mlr_core.evaluate import provenance
    from mlr_core.methods.registry import build_scorer
    from mlr_core.runs import parse_run
    from mlr_core.seeded_runs import artifact_path
    from mlr_core.supervised import trained_model_path

    ep, isp, ev = params.image_supervised.ensemble, params.image_supervised, params.evaluate
    trainval = FeatureCache(trainval_path, expect_fingerprint=clip.fingerprint)
    val = budget_features(load_budget(budgets_dir, "val"), trainval)
    val_global, val_dense = (torch.from_numpy(val[k].astype(np.float32)) for k in ("global", "dense"))

    def member(method: str, artifact: Path):
        """-> (its scorer, its validation scores)."""
        scorer = build_scorer(method, clip, trainval.classes, params, artifact)
        return scorer, scorer(val_global, val_dense)[0].numpy()

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
        (b_scorer, b_val), (o_scorer, o_val) = member(base, b_artifact), member(
            method, trained_model_path(models_dir, method, run))
        weight, val_map = choose_weight(b_val, o_val, val["labels"], ep.weights)
        name = f"{base}+{method}_{run}"
        exported = EnsembleScorer(b_scorer, o_scorer, weight, EnsembleScorer.member_ranges(b_val, o_val))
        decision = validation_thresholds(exported(val_global, val_dense)[1].numpy(), val["labels"], ev.threshold)
        out[name] = evaluate_ensemble(
            Path(scores_dir) / base / f"{b_run}.parquet", Path(scores_dir) / method / f"{run}.parquet", weight,
            test_path, threshold=ev.threshold, top_k=ev.top_k, ece_bins=ev.ece_bins, exported=exported,
            decision=decision, metrics_path=Path(metrics_dir) / "ensemble" / f"{name}.json",
            plots_dir=plots_dir, plot_name=f"ensemble/{name}", scores_path=Path(scores_dir) / "ensemble" / f"{name}.parquet",
            info={"base": f"{base}/{b_run}", "other": f"{method}/{run}", "seed": parse_run(run).seed,
                  "weight_val_mAP": round(val_map, 3)})
        save_classifier(Path(classifiers_dir) / "ensemble" / f"{name}.safetensors", exported, method="ensemble",
                        run=name, classes=trainval.classes, decision=decision,
                        backbone=provenance(FeatureCache(test_path))["model"])
    return out
