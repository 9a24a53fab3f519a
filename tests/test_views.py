"""Augmented views of the trainval images (mlr_core.views): seeded per view, encoded once into their own cache,
and trained on with each image's budget labels."""
import numpy as np
import pytest
import torch
from PIL import Image

from mlr_core.budgets import budget_features, load_budget, write_budgets
from mlr_core.cache import FeatureCache, write_feature_cache
from mlr_core.config import ParamsError, load_params
from mlr_core.runs import parse_run
from mlr_core.views import ViewAugment, base_image_id

VIEWS = ViewAugment(n=3, crop_scale=(0.4, 1.0), hflip=True, seed=0)


@pytest.fixture(scope="module")
def world(make_benchmark):
    return make_benchmark(seed=2, n_trainval=12, n_test=2, split="trainval", max_objects=3)


def _picture() -> Image.Image:
    a = np.arange(48 * 40 * 3, dtype=np.uint32).reshape(40, 48, 3)
    return Image.fromarray(((a * 2654435761) % 251).astype(np.uint8), "RGB")


def test_a_view_depends_only_on_its_seed_and_id():
    im = _picture()
    a, b = VIEWS.apply(im, "x#view0"), VIEWS.apply(im, "x#view0")
    assert a.size == im.size and np.array_equal(np.asarray(a), np.asarray(b))
    others = [np.asarray(VIEWS.apply(im, f"x#view{k}")) for k in (1, 2)] + [
        np.asarray(ViewAugment(3, (0.4, 1.0), True, seed=1).apply(im, "x#view0"))]
    assert all(not np.array_equal(np.asarray(a), o) for o in others)


def test_full_scale_without_flip_is_the_image_itself_or_its_mirror():
    im = _picture()
    same = ViewAugment(n=1, crop_scale=(1.0, 1.0), hflip=False, seed=0)
    # area 1 with a non-square ratio does not fit: torchvision's fallback is the whole image
    assert np.array_equal(np.asarray(same.apply(im, "x#view0")), np.asarray(im))
    flips = {bool(np.array_equal(np.asarray(ViewAugment(1, (1.0, 1.0), True, 0).apply(im, f"x#view{k}")),
                                 np.asarray(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))) for k in range(12)}
    assert flips == {True, False}  # some views flipped, some not


def test_the_views_cache_holds_each_view_with_its_images_labels(world, clip, tmp_path):
    out = write_feature_cache(world, clip, tmp_path / "views.parquet", batch_size=5, shard_size=7, views=VIEWS)
    cache = FeatureCache(out, expect_fingerprint=clip.fingerprint)
    full = cache.read(("global",))
    assert full.image_ids == [f"{i}#view{k}" for i in world.image_ids for k in range(3)]
    assert [base_image_id(i) for i in full.image_ids] == [i for i in world.image_ids for _ in range(3)]
    assert np.array_equal(full.labels, np.repeat(world.targets, 3, axis=0))
    assert cache.meta["views"] == VIEWS.record()
    # each row is the encoder's output on that view (preprocessed as any image)
    k = 4
    im = VIEWS.apply(Image.open(world.paths[k // 3]).convert("RGB"), full.image_ids[k])
    with torch.no_grad():
        ref = clip.model.encode_image(clip.preprocess(im)[None]).numpy()[0]
    np.testing.assert_allclose(full.global_[k].astype(np.float32), ref, atol=2e-3 * np.abs(ref).max())
    # another seed gives other pixels: a resume with it redoes every shard (the seed is in the state)
    again = write_feature_cache(world, clip, tmp_path / "views.parquet", batch_size=5, shard_size=7,
                                views=ViewAugment(3, (0.4, 1.0), True, seed=5))
    assert not np.array_equal(FeatureCache(again).read(("global",)).global_, full.global_)


def test_budget_rows_of_the_views_keep_the_partial_label_mask(world, clip, tmp_path):
    plain = write_feature_cache(world, clip, tmp_path / "trainval.parquet", batch_size=6, shard_size=6)
    views = write_feature_cache(world, clip, tmp_path / "views.parquet", batch_size=6, shard_size=6, views=VIEWS)
    write_budgets(world.image_ids, world.targets, world.classes, tmp_path / "budgets", val_fraction=0.25, val_seed=0,
                  seeds=[0], proportions=[0.5], shots=[], zeroshot_splits=[])
    budget = load_budget(tmp_path / "budgets", "noaug-partial50_s0")  # the control reads the same budget
    images = budget_features(budget, FeatureCache(plain))
    rows = budget_features(budget, FeatureCache(views), views=True)
    assert len(rows["labels"]) == 3 * len(budget.image_ids)
    assert np.array_equal(rows["labels"], np.repeat(budget.labels, 3, axis=0))
    assert (rows["labels"] == -1).any()  # unknown labels stay unknown in every view
    assert rows["global"].shape[1:] == images["global"].shape[1:] and rows["dense"].shape[1:] == images["dense"].shape[1:]


def test_noaug_runs_name_the_same_budget():
    r = parse_run("noaug-partial10_s2")
    assert (r.kind, r.value, r.seed, r.budget, r.views) == ("partial", 0.1, 2, "partial10_s2", False)
    assert parse_run("partial10_s2").views and not parse_run("noaug-zsl-coco_48_17_s0").views


def test_crop_scale_is_checked(tmp_path):
    text = open("params.yaml").read().replace("crop_scale: [0.5, 1.0]", "crop_scale: [0.9, 0.2]")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match="crop_scale"):
        load_params(tmp_path / "params.yaml")
