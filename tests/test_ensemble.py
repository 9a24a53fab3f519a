"""Score ensembles: per-class min-max normalisation, the weighted mix, alignment by image id, evaluation."""
import json

import numpy as np
import pytest

from mlr_core.evaluate import provenance, read_scores, write_scores
from mlr_core.methods.ensemble import ensemble, mix_scores

ORIGIN = {"model": {"arch": "tinyworld-RN", "weights_id": "abc"}, "dataset": {"name": "tinyworld", "root": "d"}}


def test_mix_normalises_each_class_to_unit_range():
    a = np.array([[0.0, 10.0], [5.0, 20.0], [10.0, 30.0]])
    b = np.array([[-1.0, 3.0], [1.0, 1.0], [0.0, 2.0]])
    # per class: a -> [0, .5, 1] in both columns; b col0 -> [0, 1, .5], col1 -> [1, 0, .5]
    mixed = mix_scores(a, b, 0.25)
    expected = 0.75 * np.array([[0, 0], [0.5, 0.5], [1, 1]]) + 0.25 * np.array([[0, 1], [1, 0], [0.5, 0.5]])
    assert np.allclose(mixed, expected)
    assert np.allclose(mix_scores(a, b, 0.0), mix_scores(a * 7 + 3, b, 0.0))  # invariant to affine rescaling
    assert mix_scores(a, b, 1.0).min() == 0 and mix_scores(a, b, 1.0).max() == 1
    with pytest.raises(ValueError):
        mix_scores(a, b[:2], 0.5)


def test_ensemble_aligns_by_image_id(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(8)]
    a, b = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
    write_scores(tmp_path / "a.parquet", ids, ["x", "y", "z"], a, ORIGIN)
    perm = rng.permutation(8)
    write_scores(tmp_path / "b.parquet", [ids[k] for k in perm], ["x", "y", "z"], b[perm], ORIGIN)
    got_ids, mixed, origin = ensemble(tmp_path / "a.parquet", tmp_path / "b.parquet", 0.5)
    assert got_ids == ids and origin == {"classes": ["x", "y", "z"], **ORIGIN}
    assert np.allclose(mixed, mix_scores(a, b, 0.5), atol=1e-6)
    assert read_scores(tmp_path / "a.parquet")[1].shape == (8, 3)
    write_scores(tmp_path / "c.parquet", ids, ["x", "y", "w"], b, ORIGIN)
    with pytest.raises(ValueError, match="different classes"):
        ensemble(tmp_path / "a.parquet", tmp_path / "c.parquet", 0.5)


def test_ensemble_refuses_scores_of_two_models(tmp_path):
    ids = [f"i{k}" for k in range(4)]
    s = np.arange(12.0).reshape(4, 3)
    write_scores(tmp_path / "a.parquet", ids, ["x", "y", "z"], s, ORIGIN)
    other = {**ORIGIN, "model": {"arch": "RN50", "weights_id": "def"}}
    write_scores(tmp_path / "b.parquet", ids, ["x", "y", "z"], s, other)
    with pytest.raises(ValueError, match="different models"):
        ensemble(tmp_path / "a.parquet", tmp_path / "b.parquet", 0.5)


def test_evaluate_ensemble_on_a_feature_cache(tmp_path):
    from mlr_core.cache import FeatureCache
    from mlr_core.methods.ensemble import evaluate_ensemble

    import torch

    from mlr_core.cache import write_text_feature_cache
    from mlr_core.models.clip import load_clip

    # a small labelled cache of its own (the ensemble reads only ids and labels from it)
    rng = np.random.default_rng(0)
    y = (rng.random((80, 6)) < 0.3).astype(np.int8)
    y[np.arange(80), rng.integers(0, 6, 80)] = 1
    torch.manual_seed(0)
    test_cache = write_text_feature_cache([f"item {i}" for i in range(80)], [f"img{i}" for i in range(80)], y,
                                          [f"c{k}" for k in range(6)], load_clip("tinyworld-RN", None),
                                          tmp_path / "test.parquet", batch_size=40, shard_size=80)
    cache = FeatureCache(test_cache)
    labels = cache.read(())
    rng = np.random.default_rng(1)
    good = labels.labels + rng.normal(scale=0.1, size=labels.labels.shape)  # nearly perfect
    noise = rng.normal(size=labels.labels.shape)
    write_scores(tmp_path / "good.parquet", labels.image_ids, cache.classes, good, provenance(cache))
    write_scores(tmp_path / "noise.parquet", labels.image_ids, cache.classes, noise, provenance(cache))
    kw = dict(threshold=0.5, top_k=[3], ece_bins=15, plots_dir=tmp_path / "plots", plot_name="mix")
    s0 = evaluate_ensemble(tmp_path / "good.parquet", tmp_path / "noise.parquet", 0.0, test_cache,
                           metrics_path=tmp_path / "m0.json", **kw)
    s1 = evaluate_ensemble(tmp_path / "good.parquet", tmp_path / "noise.parquet", 1.0, test_cache,
                           metrics_path=tmp_path / "m1.json", **kw)
    assert s0["mAP"] > 95 and s1["mAP"] < 60  # pure noise: about the positive rate
    m0 = json.loads((tmp_path / "m0.json").read_text())
    assert m0["weight"] == 0.0 and m0["model"]["weights_id"] == cache.meta["weights_id"]
    # scores made on another cache's features are refused
    write_scores(tmp_path / "alien.parquet", labels.image_ids, cache.classes, good, ORIGIN)
    with pytest.raises(ValueError, match="not scored on"):
        evaluate_ensemble(tmp_path / "alien.parquet", tmp_path / "alien.parquet", 0.5, test_cache,
                          metrics_path=tmp_path / "m2.json", **kw)
