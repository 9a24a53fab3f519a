"""Classifier exports, decision rules, ECE and the predict command, on a small tinyworld benchmark and a
random-weight tinyworld CLIP checkpoint (the weights-independent parts; the real trained artifacts are checked
by the end-to-end `dvc repro`)."""
import json
import shutil

import numpy as np
import pytest
import torch

from mlr_core.calibration import (decision_metrics, expected_calibration_error, predict_labels, top_k_decision,
                                  validation_thresholds)
from mlr_core.classifier import ClassifierError, load_classifier, save_classifier
from mlr_core.predict import PredictInputError, collect_images, main, predict, read_predictions


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_benchmark):
    """A 12-image test split, a random-weight checkpoint file, its CLIP, the test feature cache and a zero-shot
    DPT scorer exported with its evaluation (top-3 rule)."""
    from mlr_core.cache import FeatureCache, write_feature_cache
    from mlr_core.evaluate import evaluate_method
    from mlr_core.methods.zsclip import zero_shot_scorer
    from mlr_core.models.clip import load_clip, write_random_checkpoint

    d = tmp_path_factory.mktemp("predict")
    test = make_benchmark(seed=3, n_trainval=2, n_test=12, split="test")
    ckpt = write_random_checkpoint("tinyworld-RN", d / "rn.safetensors", seed=0)
    clip = load_clip("tinyworld-RN", str(ckpt), "cpu", "fp32", 64)
    write_feature_cache(test, clip, d / "test.parquet", batch_size=8, shard_size=8)
    cache = FeatureCache(d / "test.parquet")
    scorer = zero_shot_scorer(clip, cache.classes, template="a photo of a {}.", scale=4.0, local_temperature=40.0,
                              local_weight=0.5, use_local=True)
    summary, scores, targets = evaluate_method(
        cache, scorer, name="zsclip_dpt", threshold=0.5, top_k=[3], ece_bins=15, scores_path=d / "s.parquet",
        metrics_path=d / "m.json", plots_dir=d / "plots", decision=top_k_decision(3),
        classifier_path=d / "zsclip_dpt.safetensors")
    return {"d": d, "test": test, "clip": clip, "cache": cache, "ckpt": ckpt, "scorer": scorer, "summary": summary,
            "scores": scores, "folder": test.paths[0].parent, "classifier": d / "zsclip_dpt.safetensors",
            "manifest": test.paths[0].parents[2] / "manifest.csv"}


def test_predict_on_a_plain_folder_equals_the_evaluation(world, tmp_path):
    out = tmp_path / "tags.csv"
    s = predict(world["classifier"], [world["folder"]], out, batch_size=5, shard_size=4, labels=world["manifest"],
                summary_path=tmp_path / "summary.json", contact_sheet=tmp_path / "sheet.png", sheet_images=4,
                sheet_columns=2)
    ids, classes, scores, probs, labels = read_predictions(out)
    assert classes == world["cache"].classes and s["n_scored"] == 12 and s["n_skipped"] == 0
    by_name = {i.split("/")[-1]: r for r, i in enumerate(world["cache"].read(()).image_ids)}
    rows = [by_name[i] for i in ids]
    np.testing.assert_allclose(scores, world["scores"][rows], atol=1e-5)
    # the labels it writes are the rule's (top 3), and reach exactly the CF1 the evaluation reports for it
    assert all(len(x) == 3 for x in labels)
    assert s["against_labels"]["decision"]["CF1"] == world["summary"]["decision"]["CF1"]
    assert s["against_labels"]["mAP"] == world["summary"]["mAP"]
    assert (tmp_path / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "tags.csv.partial").exists()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_every_output_format_holds_the_same_predictions(world, tmp_path, fmt):
    predict(world["classifier"], [world["folder"]], tmp_path / "a.csv", batch_size=8, shard_size=8)
    predict(world["classifier"], [world["folder"]], tmp_path / f"b.{fmt}", batch_size=8, shard_size=8, top_k=2)
    a, b = read_predictions(tmp_path / "a.csv"), read_predictions(tmp_path / f"b.{fmt}")
    assert a[0] == b[0] and a[1] == b[1]
    np.testing.assert_allclose(a[2], b[2], rtol=1e-6)
    assert all(len(x) == 2 for x in b[4])  # --top-k replaced the classifier's top-3 rule


def test_inputs_folder_glob_manifest_and_list(world, tmp_path):
    folder = world["folder"]
    files = sorted(folder.glob("*.png"))
    (tmp_path / "list.txt").write_text("\n".join(str(f) for f in files[:3]) + "\n")
    ids, paths = collect_images([folder])
    assert ids == [f.name for f in files] and paths == files
    assert collect_images([str(folder / "*.png")])[1] == files
    assert collect_images([tmp_path / "list.txt"])[1] == files[:3]
    m_ids, m_paths = collect_images([world["manifest"]])
    assert {p.resolve() for p in m_paths} >= {f.resolve() for f in files}


def test_bad_inputs_each_get_one_clear_message(world, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictInputError, match="no such folder or file"):
        collect_images([tmp_path / "missing"])
    with pytest.raises(PredictInputError, match="folder holds no image files"):
        collect_images([tmp_path / "empty"])
    with pytest.raises(PredictInputError, match="matches no image file"):
        collect_images([str(tmp_path / "*.jpg")])
    with pytest.raises(PredictInputError, match="named twice"):
        collect_images([world["folder"], world["folder"]])
    # the CLI says it in one line and exits 2, writing nothing
    assert main([str(world["classifier"]), str(tmp_path / "empty"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "folder holds no image files" in capsys.readouterr().err and not (tmp_path / "o.csv").exists()


def test_corrupt_or_foreign_classifier_files_are_refused(world, tmp_path):
    good = world["classifier"].read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    for name in ("truncated", "garbage"):
        with pytest.raises(ClassifierError, match="corrupt|do not rebuild|not a readable"):
            load_classifier(tmp_path / f"{name}.safetensors")
    with pytest.raises(ClassifierError, match="without 'mlr_core.classifier' metadata"):
        load_classifier(world["ckpt"])  # a CLIP checkpoint is a safetensors file, not a classifier
    with pytest.raises(ClassifierError, match="not found"):
        load_classifier(tmp_path / "none.safetensors")
    # nothing partial is left behind by a refused run
    with pytest.raises(ClassifierError):
        predict(tmp_path / "garbage.safetensors", [world["folder"]], tmp_path / "o.csv", batch_size=4, shard_size=4)
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.partial").exists()


def test_a_classifier_refuses_another_backbone(world, tmp_path):
    from mlr_core.models.clip import load_clip, write_random_checkpoint

    other = load_clip("tinyworld-RN", str(write_random_checkpoint("tinyworld-RN", tmp_path / "o.safetensors", seed=1)),
                      "cpu", "fp32", 64)
    with pytest.raises(ClassifierError, match="fingerprint"):
        load_classifier(world["classifier"], other)
    with pytest.raises(ClassifierError, match="fingerprint"):
        predict(world["classifier"], [world["folder"]], tmp_path / "o.csv", batch_size=4, shard_size=4,
                pretrained=str(tmp_path / "o.safetensors"))
    assert not (tmp_path / "o.csv").exists()


def test_an_unreadable_image_is_reported_by_name_and_skipped(world, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(world["folder"], folder)
    (folder / "broken.png").write_bytes(b"not a png")
    s = predict(world["classifier"], [folder], tmp_path / "o.csv", batch_size=4, shard_size=4)
    assert s["n_scored"] == 12 and s["n_skipped"] == 1 and s["skipped"][0][0] == "broken.png"
    assert "broken.png" in s["skipped"][0][1]
    assert "broken.png" not in read_predictions(tmp_path / "o.csv")[0]
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"")
    with pytest.raises(PredictInputError, match="none of the 1 images could be read"):
        predict(world["classifier"], [only_bad], tmp_path / "bad.csv", batch_size=4, shard_size=4)
    assert not (tmp_path / "bad.csv").exists()


def test_a_killed_run_resumes_and_redoes_a_shard_whose_image_changed(world, tmp_path, monkeypatch, capsys):
    import mlr_core.shards as shards

    folder = tmp_path / "photos"
    shutil.copytree(world["folder"], folder)
    out = tmp_path / "o.parquet"
    write = shards.ShardedWork.write
    calls = []

    def dies_after_two(self, k, table, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(k)
        write(self, k, table, **kw)

    monkeypatch.setattr(shards.ShardedWork, "write", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        predict(world["classifier"], [folder], out, batch_size=4, shard_size=4)
    assert not out.exists() and len(list((tmp_path / "o.parquet.partial").glob("shard-*.parquet"))) == 2
    monkeypatch.setattr(shards.ShardedWork, "write", write)
    first = sorted(folder.glob("*.png"))[0]
    shutil.copy(sorted(folder.glob("*.png"))[5], first)  # shard 0's first image changed under the same name
    capsys.readouterr()
    predict(world["classifier"], [folder], out, batch_size=4, shard_size=4)
    said = capsys.readouterr().out
    assert "resuming, 1 of 3 shards already done" in said and "shard 0 was made from other inputs" in said
    fresh = tmp_path / "fresh.parquet"
    predict(world["classifier"], [folder], fresh, batch_size=4, shard_size=4)
    np.testing.assert_array_equal(read_predictions(out)[2], read_predictions(fresh)[2])


def test_every_scorer_kind_round_trips_through_its_export(world, tmp_path):
    from mlr_core.methods.dualcoop import DualCoOp, DualCoOpConfig
    from mlr_core.methods.ensemble import EnsembleScorer
    from mlr_core.methods.pvlr import PVLR, PvlrConfig
    from mlr_core.methods.t2i_pal import PalConfig, T2IPal

    clip, classes = world["clip"], world["cache"].classes
    full = world["cache"].read(("global", "dense"))
    g, d = torch.from_numpy(full.global_.astype(np.float32)), torch.from_numpy(full.dense.astype(np.float32))
    torch.manual_seed(0)
    pvlr = PVLR(clip, classes, PvlrConfig(), seed=0)
    dual = DualCoOp(clip, classes, DualCoOpConfig(), seed=0).scorer()
    scorers = {"zero-shot": world["scorer"],
               "t2i_pal": T2IPal(clip, classes, PalConfig(), seed=0).scorer(local_weight=0.5, probability_scale=100.),
               "dualcoop": dual, "pvlr": pvlr.scorer(),
               "ensemble": EnsembleScorer(world["scorer"], dual, 0.3, EnsembleScorer.member_ranges(
                   world["scorer"](g, d)[0].numpy(), dual(g, d)[0].numpy()))}
    for name, scorer in scorers.items():
        path = save_classifier(tmp_path / f"{name}.safetensors", scorer, method=name, run=None, classes=classes,
                               decision=top_k_decision(2), backbone={"fingerprint": clip.fingerprint})
        loaded = load_classifier(path, clip)
        with torch.no_grad():
            for a, b in zip(scorer(g, d), loaded.scorer(g, d)):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
        # loading never unpickles: the file is a safetensors header (8-byte length, JSON) and raw tensors
        raw = path.read_bytes()
        header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
        assert set(header) - {"__metadata__"} and all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")
    # a PVLR with its own fine-tuned image tower carries it, and scores pixels with it
    ft = PVLR(clip, classes, PvlrConfig(finetune=True), seed=0).scorer()
    path = save_classifier(tmp_path / "ft.safetensors", ft, method="pvlr", run="ft-full_s0", classes=classes,
                           decision=top_k_decision(2), backbone={"fingerprint": clip.fingerprint})
    loaded = load_classifier(path, clip)
    with pytest.raises(ClassifierError, match="carries its own image tower"):
        load_classifier(path)  # its tower is rebuilt on the backbone's architecture: it needs the backbone
    images = torch.randn(2, 3, 64, 64)
    assert loaded.needs_images
    torch.testing.assert_close(ft.score_images(images)[0], loaded.scorer.score_images(images)[0])


def test_ece_matches_a_binned_reference():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(0)
    p = rng.random((200, 5))
    y = (rng.random((200, 5)) < p ** 2).astype(np.int8)
    y[:10, 0] = -1  # ignored pairs are left out
    valid = y != -1
    true, pred = calibration_curve(y[valid], p[valid], n_bins=10, strategy="uniform")
    counts = np.histogram(p[valid], bins=np.linspace(0, 1, 11))[0]
    want = 100 * np.sum(np.abs(true - pred) * counts[counts > 0]) / valid.sum()
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(want, rel=1e-9)
    assert expected_calibration_error(np.full((4, 2), 0.5), np.array([[1, 0]] * 4)) == pytest.approx(0.0)


def test_decision_rules_and_their_metrics():
    p = np.array([[0.9, 0.2, 0.6], [0.25, 0.8, 0.1], [0.3, 0.35, 0.2]])
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]])
    rule = validation_thresholds(p, y, default=0.5)
    assert rule["rule"] == "thresholds" and rule["values"] == [0.3, 0.8, 0.6]
    assert predict_labels(p, p, rule).tolist() == (y == 1).tolist()
    assert decision_metrics(p, p, y, rule)["CF1"] == pytest.approx(100.0)
    assert predict_labels(p, p, {"rule": "threshold", "value": 0.5}).sum() == 3
    with pytest.raises(ValueError, match="'k' must be an integer in 1..3"):
        predict_labels(p, p, {"rule": "top_k", "k": 4})
    with pytest.raises(ValueError, match="one threshold per class"):
        predict_labels(p, p, {"rule": "thresholds", "values": [0.5]})
