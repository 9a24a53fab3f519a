"""Label budgets: seeded, reproducible, proportion per class respected, K-shot coverage, zero-shot splits."""
import json

import numpy as np
import pytest

from mlr_core.budgets import (COCO_48_17_SEEN, COCO_48_17_UNSEEN, BudgetError, carve_validation, k_shot_indices,
                              load_budget, parse_run, partial_labels, resolve_split, write_budgets)


def _targets(n=300, c=7, seed=0):
    rng = np.random.default_rng(seed)
    t = (rng.random((n, c)) < np.linspace(0.05, 0.5, c)).astype(np.int8)
    t[rng.random((n, c)) < 0.03] = -1  # unknown labels already in the source
    return t


def test_partial_labels_reproducible_and_proportion_per_class():
    t = _targets()
    for p in (0.1, 0.35, 0.9):
        a, b = partial_labels(t, p, seed=3), partial_labels(t, p, seed=3)
        assert np.array_equal(a, b)
        assert not np.array_equal(a, partial_labels(t, p, seed=4))
        for c in range(t.shape[1]):
            n_known = int((t[:, c] != -1).sum())
            assert int((a[:, c] != -1).sum()) == round(p * n_known)
        kept = a != -1
        assert np.array_equal(a[kept], t[kept])  # kept labels are the true ones, never flipped
        assert not (kept & (t == -1)).any()  # an unknown source label never becomes known


def test_partial_masks_are_nested_across_proportions():
    t = _targets()
    small, large = partial_labels(t, 0.2, 1) != -1, partial_labels(t, 0.6, 1) != -1
    assert (small <= large).all()


def test_k_shot_covers_every_class_and_is_seeded():
    t = _targets(n=400)
    for k in (1, 4, 16):
        rows, short = k_shot_indices(t, k, seed=0)
        assert np.array_equal(rows, k_shot_indices(t, k, seed=0)[0])
        assert short == []
        pos = (t[rows] == 1).sum(0)
        assert (pos >= k).all()
        assert len(rows) <= k * t.shape[1]  # an image is only added while its class still needs positives
    assert not np.array_equal(k_shot_indices(t, 4, 0)[0], k_shot_indices(t, 4, 1)[0])


def test_k_shot_reports_classes_short_of_k():
    t = np.zeros((10, 3), np.int8)
    t[:, 0] = 1
    t[:2, 1] = 1
    rows, short = k_shot_indices(t, 4, seed=0)
    assert short == [1, 2] and (t[rows, 1] == 1).sum() == 2


def test_validation_carve_disjoint_seeded():
    tr, va = carve_validation(100, 0.2, seed=5)
    assert len(va) == 20 and len(tr) == 80 and not set(tr) & set(va)
    assert np.array_equal(va, carve_validation(100, 0.2, seed=5)[1])


def test_zero_shot_splits():
    seen, unseen = resolve_split(list(COCO_48_17_SEEN + COCO_48_17_UNSEEN) + ["hot dog"], "coco_48_17")
    assert len(seen) == 48 and len(unseen) == 17 and "hot dog" not in seen
    seen, unseen = resolve_split(["a", "b", "c"], "mine", unseen=["b"])
    assert seen == ["a", "c"] and unseen == ["b"]
    with pytest.raises(BudgetError):
        resolve_split(["a", "b"], "mine", unseen=["z"])
    with pytest.raises(BudgetError):
        resolve_split(["a", "b"], "nosuchsplit")


def test_run_names():
    r = parse_run("partial10_s2")
    assert (r.kind, r.value, r.seed, r.budget) == ("partial", 0.1, 2, "partial10_s2")
    assert parse_run("shot4_s1").budget == "shot4_s1"
    assert parse_run("full_s2").budget == "full_s2"
    assert parse_run("zsl-coco_48_17_s0").budget == "zsl-coco_48_17_s0"
    with pytest.raises(BudgetError):
        parse_run("partial10")


def test_write_and_load_budgets(tmp_path):
    t = _targets(n=200, c=4)
    ids = [f"img{i}" for i in range(200)]
    classes = ["w", "x", "y", "z"]
    kw = dict(val_fraction=0.1, val_seed=0, seeds=[0, 1], proportions=[0.1, 0.5], shots=[2],
              zeroshot_splits=[{"name": "toy", "unseen": ["z"]}])
    write_budgets(ids, t, classes, tmp_path / "a", **kw)
    write_budgets(ids, t, classes, tmp_path / "b", **kw)
    for name in ("val", "full_s0", "partial10_s0", "partial50_s1", "shot2_s0", "zsl-toy_s1"):
        a, b = load_budget(tmp_path / "a", name), load_budget(tmp_path / "b", name)
        assert a.image_ids == b.image_ids and np.array_equal(a.labels, b.labels)  # reproducible from the seed
    val, full = load_budget(tmp_path / "a", "val"), load_budget(tmp_path / "a", "full_s0")
    assert len(val.image_ids) == 20 and not set(val.image_ids) & set(full.image_ids)
    for name in ("partial10_s0", "shot2_s0", "zsl-toy_s0"):
        assert not set(load_budget(tmp_path / "a", name).image_ids) & set(val.image_ids)  # never from val
    z = load_budget(tmp_path / "a", "zsl-toy_s1")
    assert (z.labels[:, 3] == -1).all() and z.info["unseen"] == ["z"]
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    assert index["budgets"]["partial50_s1"]["n_images"] == 180
    # each budget file is self-contained (a stage reading one depends on that file only): no index needed
    (tmp_path / "a" / "index.json").unlink()
    assert load_budget(tmp_path / "a", "zsl-toy_s1").info == index["budgets"]["zsl-toy_s1"]
    for name in ("val", "full_s0", "partial10_s0", "partial50_s1", "shot2_s0", "zsl-toy_s1"):
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == (tmp_path / "b" / f"{name}.parquet").read_bytes()
    with pytest.raises(BudgetError):
        load_budget(tmp_path / "a", "partial30_s0")
