"""The runs of a text-trained method (TaI / TaI-DPT, data-free, T2I-PAL): ``s<seed>`` or ``<control>_s<seed>``
(:func:`mlr_core.runs.parse_seeded_run`), all trained in one stage and evaluated in one.

Training writes ``{out_dir}/{method}/{run}.safetensors`` and the training log ``{plots_dir}/train/{method}/{run}.json``
(one entry per evaluation of the validation signal); evaluation scores the test cache once per run and writes
``data/scores/{method}/{run}.parquet``, ``metrics/{method}/{run}.json`` (with the run's seed, control and budget
record, :meth:`mlr_core.train.FitResult.record`) and the plots ``{method}/{run}``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from tqdm import tqdm

from mlr_core.io import atomic_write_json, read_learned_meta
from mlr_core.methods.controls import WithControl
from mlr_core.runs import SeededRun, parse_seeded_run


def seeded_runs(runs: list[str], controls: dict[str, dict]) -> list[SeededRun]:
    return [parse_seeded_run(r, tuple(controls)) for r in runs]


def train_seeded_runs(method: str, section, controls: dict[str, dict],
                      train_one: Callable[[SeededRun, WithControl, Path], object], *, workers: int | str, device: str,
                      out_dir: str | Path = "data/prompts", plots_dir: str | Path = "plots") -> dict:
    """``train_one(run, p, out_path) -> FitResult`` for each run in ``section.runs`` (``p``: the section with the
    run's control applied), ``workers`` at once (:func:`mlr_core.parallel.map_runs`); writes each training log.
    Returns run name -> FitResult."""
    from mlr_core.parallel import map_runs

    def one(run: SeededRun):
        result = train_one(run, WithControl(section, run.control, controls), artifact_path(out_dir, method, run.name))
        atomic_write_json(Path(plots_dir) / "train" / method / f"{run.name}.json", result.log)
        return result

    runs = seeded_runs(section.runs, controls)
    return dict(zip((r.name for r in runs), map_runs(one, runs, workers=workers, device=device,
                                                      desc=f"train {method}")))


def evaluate_seeded_runs(method: str, runs: list[str], controls: dict[str, dict], clip, params, *, test_path,
                         threshold: float, top_k: list[int], prompts_dir: str | Path = "data/prompts",
                         scores_dir: str | Path = "data/scores", metrics_dir: str | Path = "metrics",
                         plots_dir: str | Path = "plots", classifiers_dir: str | Path = "data/classifiers"
                         ) -> dict[str, dict]:
    """Score the test cache with each trained run of ``method`` and export its classifier (decision rule: its
    top ``evaluate.decision_top_k`` classes; a text-trained method has no labelled images to choose thresholds
    on); run name -> its metrics."""
    from mlr_core.cache import FeatureCache
    from mlr_core.calibration import top_k_decision
    from mlr_core.evaluate import evaluate_method
    from mlr_core.methods.registry import build_scorer

    test = FeatureCache(test_path, expect_fingerprint=clip.fingerprint)
    out = {}
    for run in tqdm(seeded_runs(runs, controls), desc=f"evaluate {method}", unit="run"):
        path = artifact_path(prompts_dir, method, run.name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no trained run (run {method}'s training stage for {run.name})")
        meta = read_learned_meta(path)
        info = {"run": run.name, "seed": run.seed, "control": run.control, "training": meta.get("training")}
        if "hierarchy" in meta:  # the data-free method: where its subgroups came from
            info["hierarchy_sources"] = meta["hierarchy"]["sources"]
        out[run.name], _, _ = evaluate_method(
            test, build_scorer(method, clip, test.classes, params, path), name=method, threshold=threshold,
            top_k=top_k, ece_bins=params.evaluate.ece_bins, scores_path=Path(scores_dir) / method / f"{run.name}.parquet",
            metrics_path=Path(metrics_dir) / method / f"{run.name}.json", plots_dir=plots_dir,
            plot_name=f"{method}/{run.name}", info=info, decision=top_k_decision(params.evaluate.decision_top_k),
            classifier_path=Path(classifiers_dir) / method / f"{run.name}.safetensors", run=run.name)
    return out


def artifact_path(out_dir: str | Path, method: str, run_name: str) -> Path:
    """Where a run's trained file lives (training writes it, evaluation and ensembles read it)."""
    return Path(out_dir) / method / f"{run_name}.safetensors"
