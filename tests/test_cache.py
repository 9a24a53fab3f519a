import numpy as np
import pytest
import torch
from PIL import Image

import mlr_core.models.features as features_mod
from mlr_core.cache import CacheMismatchError, FeatureCache, ImageReadError, write_feature_cache
from mlr_core.data.manifest import read_manifest
from mlr_core.data.tinyworld import write_tinyworld
from mlr_core.models.clip import load_clip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tw")
    write_tinyworld(root, seed=1, image_size=64, min_objects=1, max_objects=4, n_corpus=0,
                    captions_per_scene=1, n_trainval=2, n_test=10)
    return read_manifest(root / "benchmark" / "manifest.csv", root / "benchmark" / "classes.txt").subset("test")


def test_cache_matches_the_model_and_streams(world, clip, tmp_path):
    out = write_feature_cache(world, clip, tmp_path / "test.parquet", batch_size=4, shard_size=4)
    assert not (tmp_path / "test.parquet.partial").exists()
    cache = FeatureCache(out, expect_fingerprint=clip.fingerprint)
    assert len(cache) == 10 and cache.grid == (4, 4) and cache.classes == world.classes
    full = cache.read(("global", "dense"))
    assert full.image_ids == world.image_ids
    assert np.array_equal(full.labels, world.targets)
    images = torch.stack([clip.preprocess(Image.open(p).convert("RGB")) for p in world.paths])
    with torch.no_grad():
        ref = clip.model.encode_image(images).numpy()
    np.testing.assert_allclose(full.global_.astype(np.float32), ref, atol=2e-3 * np.abs(ref).max())
    assert full.dense.shape == (10, 16, cache.dim) and full.global_.dtype == np.float16
    batches = list(cache.iter_batches(("global",), batch_rows=3))
    assert [len(b.image_ids) for b in batches][0] <= 3 and sum(len(b.image_ids) for b in batches) == 10
    assert batches[0].dense is None


def test_fingerprint_mismatch_is_refused(world, clip, tmp_path):
    out = write_feature_cache(world, clip, tmp_path / "test.parquet", batch_size=5, shard_size=5)
    other = load_clip("tinyworld-RN", None, image_size=96)
    with pytest.raises(CacheMismatchError, match="does not match the model in params"):
        FeatureCache(out, expect_fingerprint=other.fingerprint)


def test_resume_after_kill_encodes_only_missing_shards(world, clip, tmp_path, monkeypatch):
    out = tmp_path / "test.parquet"
    real = features_mod.encode_image_features
    calls = {"n": 0}

    def dying(model, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed while encoding the second shard
        return real(model, images)

    monkeypatch.setattr(features_mod, "encode_image_features", dying)
    with pytest.raises(KeyboardInterrupt):
        write_feature_cache(world, clip, out, batch_size=2, shard_size=4)
    assert not out.exists()  # nothing that looks finished
    assert sorted(p.name for p in (tmp_path / "test.parquet.partial").glob("shard-*")) == ["shard-00000.parquet"]

    counted = {"n": 0}

    def counting(model, images):
        counted["n"] += len(images)
        return real(model, images)

    monkeypatch.setattr(features_mod, "encode_image_features", counting)
    write_feature_cache(world, clip, out, batch_size=2, shard_size=4)
    assert counted["n"] == 6  # shards 1 and 2 only
    monkeypatch.setattr(features_mod, "encode_image_features", real)
    straight = write_feature_cache(world, clip, tmp_path / "straight.parquet", batch_size=2, shard_size=4)
    a, b = FeatureCache(out).read(("global", "dense")), FeatureCache(straight).read(("global", "dense"))
    assert a.image_ids == b.image_ids and np.array_equal(a.global_, b.global_) and np.array_equal(a.dense, b.dense)


def test_unreadable_image_is_reported_and_skipped_or_stops_the_stage(world, clip, tmp_path, capsys):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    world.paths[3], saved = bad, world.paths[3]
    try:
        with pytest.raises(ImageReadError, match="corrupt.jpg"):
            write_feature_cache(world, clip, tmp_path / "strict.parquet", batch_size=4, shard_size=4,
                                on_unreadable="error")
        assert not (tmp_path / "strict.parquet").exists()
        out = write_feature_cache(world, clip, tmp_path / "test.parquet", batch_size=4, shard_size=4)
    finally:
        world.paths[3] = saved
    cache = FeatureCache(out)
    assert len(cache) == 9 and world.image_ids[3] not in cache.read().image_ids
    assert len(cache.meta["skipped"]) == 1 and "corrupt.jpg" in cache.meta["skipped"][0][1]
    assert "skipped: cannot read image" in capsys.readouterr().err


def test_text_cache_holds_eot_and_valid_tokens(clip, tmp_path):
    from mlr_core.cache import write_text_feature_cache
    from mlr_core.models.features import encode_text_features

    texts = ["a red star.", "two circles and a heart on a plain background.", "a drop.", "a tree"]
    labels = np.eye(4, 20, dtype=np.int8)
    out = write_text_feature_cache(texts, [f"c{i}" for i in range(4)], labels, [f"k{i}" for i in range(20)], clip,
                                   tmp_path / "text.parquet", batch_size=3, shard_size=2)
    cache = FeatureCache(out, expect_fingerprint=clip.fingerprint)
    assert cache.is_text and cache.grid is None and len(cache) == 4
    full = cache.read(("global", "dense"))
    with torch.no_grad():
        ref = encode_text_features(clip.model, clip.tokenizer(texts))
    np.testing.assert_allclose(full.global_.astype(np.float32), ref.global_.numpy(), atol=3e-3)
    assert full.mask.sum(1).tolist() == ref.lengths.tolist()
    n = int(ref.lengths[1])
    np.testing.assert_allclose(full.dense[1, :n].astype(np.float32), ref.tokens[1, :n].numpy(), atol=3e-3)
    assert not full.dense[2, int(ref.lengths[2]):].any()
    assert np.array_equal(full.labels, labels)
