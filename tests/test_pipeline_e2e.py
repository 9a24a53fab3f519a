"""A tiny end-to-end `dvc repro` of the real pipeline in a scratch copy of the project."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "tinyworld": {"n_pretrain": 4, "n_corpus": 12, "n_trainval": 4, "n_test": 24, "image_size": 64},
    "features": {"batch_size": 8, "shard_size": 16, "num_workers": 0},
    "tai_dpt": {"epochs": 2, "batch_size": 16, "n_ctx": 4},
    # the real bundled LLM, asked little: attribute sentences only, short replies, no retries
    "llm": {"kinds": ["attribute"], "max_retries": 0, "batch_size": 24,
            "counts": {"common_attributes": 2, "class_attributes": 2, "attributes_per_class": 1,
                       "fine_attributes": 1, "sentences_per_attribute": 2, "coarse_groups": 2, "fine_groups": 3,
                       "pairs_per_group": 1, "sentences_per_pair": 2},
            "sampling": {"max_new_tokens": 40, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1}},
    "datafree": {"epochs": 2, "n_shared": 2, "n_partial": [1, 1], "n_specific": 1, "kinds": ["attribute"]},
    "synthesis": {"per_class": 1, "steps": 2, "batch_size": 4, "shard_size": 8},
    "t2i_pal": {"epochs": 1, "batch_size": 8, "n_ctx": 4, "seeds": [0]},
    "image_supervised": {
        "budgets": {"seeds": [0], "proportions": [0.5], "shots": [1], "val_fraction": 0.25},
        "dualcoop": {"runs": ["partial50_s0"], "zeroshot_runs": ["zsl-tinyworld_15_5_s0"], "epochs": 1, "n_ctx": 4,
                     "zeroshot_n_ctx": 4},
        "pvlr": {"runs": ["full_s0"], "epochs": 1},
        "coop": {"runs": ["shot1_s0"], "epochs": 1, "n_ctx": 4},
    },
}
STAGES = {"tinyworld", "features@trainval", "features@test", "mine_captions", "text_features", "train_prompts@tai",
          "train_prompts@tai_dpt", "evaluate_prompts@tai", "evaluate_prompts@tai_dpt", "evaluate@zsclip",
          "evaluate@zsclip_dpt",
          "llm_text", "llm_text_features", "train_datafree", "evaluate_datafree",
          "synthesize", "features_synthetic", "train_t2i_pal@0", "evaluate_t2i_pal@0",
          "budgets", "dualcoop@partial50_s0", "dualcoop_zeroshot@zsl-tinyworld_15_5_s0", "pvlr@full_s0",
          "coop@coop-shot1_s0", "coop@coop_dpt-shot1_s0", "evaluate_dualcoop@partial50_s0",
          "evaluate_dualcoop_zeroshot@zsl-tinyworld_15_5_s0", "evaluate_pvlr@full_s0", "evaluate_coop@coop-shot1_s0",
          "evaluate_coop@coop_dpt-shot1_s0", "ensemble_partial@partial50_s0", "ensemble_fewshot@shot1_s0"}
# what a change of evaluate.threshold / top_k re-runs: scoring and metrics, never training
EVALUATION_STAGES = {s for s in STAGES if s.startswith(("evaluate", "ensemble"))}


def _update(section: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            _update(section[key], value)
        else:
            section[key] = value


def run(cmd, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout + p.stderr


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


# the frozen pretrain stages' outputs ship in git, so a clone has them: make_project copies them too
SHIPPED_OUTPUTS = ("models", "metrics/pretrain_clip.json", "metrics/pretrain_t2i.json", "plots/t2i_samples.png")


def undeclared_outputs(project: Path) -> list[str]:
    """Files the pipeline wrote under data/, metrics/ and plots/ that no stage in dvc.lock declares: DVC would
    neither version them nor see that they went stale."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    declared = [Path(o["path"]) for stage in lock["stages"].values() for o in stage.get("outs", [])]
    declared += [Path(p) for p in SHIPPED_OUTPUTS]
    written = [f.relative_to(project) for top in ("data", "metrics", "plots") for f in (project / top).rglob("*")
               if f.is_file() and f.name != ".gitignore"]
    return sorted(str(f) for f in written if not any(f == o or o in f.parents for o in declared))


def make_project(d: Path, overrides: dict) -> Path:
    """A scratch copy of the project (code, pipeline, shipped checkpoint) with params overridden."""
    for name in ("dvc.yaml", "pipeline", "mlr_core", *SHIPPED_OUTPUTS):
        src = ROOT / name
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, d / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, d / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    _update(params, overrides)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], d)
    run(["dvc", "init", "-q"], d)
    run(["dvc", "config", "core.analytics", "false"], d)
    return d


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("project"), TINY)


@pytest.mark.slow
def test_dvc_repro_end_to_end(project):
    out = run(["dvc", "repro"], project)
    assert ran_stages(out) == STAGES
    for method in ("zsclip", "zsclip_dpt", "tai", "tai_dpt", "datafree", "t2i_pal_s0"):
        m = json.loads((project / "metrics" / f"{method}.json").read_text())
        assert m["n_images"] == 24 and 0 < m["mAP"] <= 100 and "F1@3" in m and "OF1" in m
        assert (project / "plots" / method / "pr_curve.json").exists()
    shown = run(["dvc", "metrics", "show", "--json"], project)
    assert "zsclip_dpt.json" in shown
    assert undeclared_outputs(project) == []

    # nothing changed: nothing runs
    assert ran_stages(run(["dvc", "repro"], project)) == set()
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "baseline"], project)

    # an evaluation-only param re-runs only evaluation
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["zeroshot"]["local_weight"] = 0.3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(["dvc", "repro"], project)) == {"evaluate@zsclip", "evaluate@zsclip_dpt"}
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project).strip().splitlines()[-1])
    assert "mAP" in diff["metrics/zsclip_dpt.json"]

    # a test-time TaI-DPT param re-evaluates the prompts without retraining them
    params["tai_dpt"]["local_weight"] = 0.3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # (and the ensembles built on TaI-DPT's saved scores, which changed)
    assert ran_stages(run(["dvc", "repro"], project)) == {"evaluate_prompts@tai", "evaluate_prompts@tai_dpt",
                                                          "ensemble_partial@partial50_s0", "ensemble_fewshot@shot1_s0"}

    # the metrics' own params re-evaluate every method and retrain none
    params["evaluate"]["top_k"] = [1, 3]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(["dvc", "repro"], project)) == EVALUATION_STAGES
    zsl = json.loads((project / "metrics" / "dualcoop" / "zsl-tinyworld_15_5_s0.json").read_text())
    assert "F1@1" in zsl["ZSL"] and zsl["known_labels"] > 0


@pytest.mark.slow
def test_params_typo_stops_before_any_work(project):
    bad = (project / "params.yaml").read_text().replace("batch_size: 8", "batch_sze: 8")
    (project / "bad.yaml").write_text(bad)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "pipeline/cache_features.py", "--params", "bad.yaml", "--split", "test",
                        "--out", "data/features/x.parquet"], cwd=project, env=env, capture_output=True, text=True)
    assert p.returncode != 0 and "features.batch_sze: unknown key" in p.stderr
    assert not (project / "data" / "features" / "x.parquet").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["voc2007", "coco2014", "nuswide"])
def test_feature_stage_reads_each_real_format_with_only_params_changed(tmp_path, name):
    import fixtures_real

    root = getattr(fixtures_real, f"make_{name}")(tmp_path / "raw", missing=True, corrupt=True)
    (tmp_path / "p").mkdir()
    d = make_project(tmp_path / "p", {
        "dataset": {"name": name, "root": str(root)},
        "model": {"pretrained": None},
        "features": {"splits": ["trainval", "test"], "image_size": 64, "batch_size": 4, "num_workers": 0},
    })
    # DVC checks the frozen pretrain_clip stage upstream of the features, and with it its (tinyworld) input
    run(["dvc", "repro", "tinyworld"], d)
    out = run(["dvc", "repro", "features"], d)
    assert "listed images are missing" in out and "skipped: cannot read image" in out
    from mlr_core.cache import FeatureCache

    for split in ("trainval", "test"):
        cache = FeatureCache(d / "data" / "features" / f"{split}.parquet")
        assert cache.meta["dataset"] == name and cache.meta["split"] == split
        assert len(cache) >= 1 and cache.read().labels.shape[1] == len(cache.classes)
    skipped = FeatureCache(d / "data" / "features" / "trainval.parquet").meta["skipped"]
    assert len(skipped) == 1 and "cannot read image" in skipped[0][1]
