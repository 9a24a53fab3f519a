import numpy as np
import pytest
import torch
from PIL import Image

import mlr_core.models.features as features_mod
from mlr_core.cache import CacheMismatchError, FeatureCache, ImageReadError, write_feature_cache
from mlr_core.models.clip import load_clip


@pytest.fixture(scope="module")
def world(make_benchmark):
    return make_benchmark(seed=1, n_trainval=2, n_test=10, split="test")


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


def _killed_at_shard(monkeypatch, n_calls, name="encode_image_features"):
    """Replace the encoder ``name`` with one that is killed (KeyboardInterrupt) at its ``n_calls``-th batch;
    returns the real encoder."""
    real = getattr(features_mod, name)
    calls = {"n": 0}

    def dying(model, inputs):
        calls["n"] += 1
        if calls["n"] == n_calls:
            raise KeyboardInterrupt
        return real(model, inputs)

    monkeypatch.setattr(features_mod, name, dying)
    return real


def test_resume_after_kill_encodes_only_missing_shards(world, clip, tmp_path, monkeypatch):
    out = tmp_path / "test.parquet"
    real = _killed_at_shard(monkeypatch, 3)  # killed while encoding the second shard
    with pytest.raises(KeyboardInterrupt):
        write_feature_cache(world, clip, out, batch_size=2, shard_size=4)
    assert not out.exists()  # nothing that looks finished
    assert sorted(p.name for p in (tmp_path / "test.parquet.partial").glob("shard-*.parquet")) == ["shard-00000.parquet"]

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


@pytest.mark.parametrize("change", ["relabel", "edit_image"])
def test_a_resume_redoes_the_shards_whose_labels_or_image_bytes_changed(world, clip, tmp_path, monkeypatch, capsys,
                                                                        change):
    """Same ids, same model, one input changed between the kill and the resume: the stale shard is redone and
    the output equals a clean run on the new inputs byte for byte (before, the old labels / features stayed)."""
    import dataclasses
    import shutil

    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for p in world.paths:
        paths.append(folder / p.name)
        shutil.copy(p, paths[-1])
    data = dataclasses.replace(world, paths=paths, targets=world.targets.copy())
    out = tmp_path / "test.parquet"
    real = _killed_at_shard(monkeypatch, 5)  # shards 0 and 1 (batches of 2 in shards of 4) are done
    with pytest.raises(KeyboardInterrupt):
        write_feature_cache(data, clip, out, batch_size=2, shard_size=4)
    monkeypatch.setattr(features_mod, "encode_image_features", real)
    if change == "relabel":
        data.targets[1] = 1 - data.targets[1]  # an image of shard 0
    else:
        Image.open(world.paths[3]).transpose(Image.FLIP_LEFT_RIGHT).save(paths[3])
    capsys.readouterr()
    write_feature_cache(data, clip, out, batch_size=2, shard_size=4)
    said = capsys.readouterr().out
    assert "shard 0 was made from other inputs" in said and "shard 1 was" not in said
    assert "resuming, 1 of 3 shards already done" in said
    clean = write_feature_cache(data, clip, tmp_path / "clean.parquet", batch_size=2, shard_size=4)
    assert out.read_bytes() == clean.read_bytes()


def test_a_work_folder_of_other_inputs_is_discarded_with_a_notice(world, clip, tmp_path, monkeypatch, capsys):
    out = tmp_path / "test.parquet"
    real = _killed_at_shard(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        write_feature_cache(world, clip, out, batch_size=2, shard_size=4)
    monkeypatch.setattr(features_mod, "encode_image_features", real)
    capsys.readouterr()
    write_feature_cache(world.select(range(8)), clip, out, batch_size=2, shard_size=4)  # another image list
    assert "discarding" in capsys.readouterr().out and not (tmp_path / "test.parquet.partial").exists()
    assert FeatureCache(out).read(()).image_ids == world.image_ids[:8]


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


def _modes_of(reference: Image.Image) -> dict:
    """The reference 8-bit image in other PIL modes, each holding the same picture."""
    gray = np.asarray(reference.convert("L"))
    rgb = np.asarray(reference)
    opaque = np.full(gray.shape, 255, np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180 degrees: the stored pixels are upside down
    rotated = reference.rotate(180)
    return {
        "I;16": (Image.fromarray(gray.astype(np.uint16) * 257), reference.convert("L").convert("RGB")),
        "I": (Image.fromarray(gray.astype(np.int32) * 257, "I"), reference.convert("L").convert("RGB")),
        "F": (Image.fromarray(gray.astype(np.float32) / 255.0, "F"), reference.convert("L").convert("RGB")),
        "CMYK": (reference.convert("CMYK"), reference.convert("CMYK").convert("RGB")),
        "LA": (Image.fromarray(np.stack([gray, opaque], -1), "LA"), reference.convert("L").convert("RGB")),
        "RGBA": (Image.fromarray(np.dstack([rgb, opaque]), "RGBA"), reference),
        "P": (reference.quantize(64), reference.quantize(64).convert("RGB")),
        "exif": (rotated, reference, exif),
    }


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "CMYK", "LA", "RGBA", "P", "exif"])
def test_every_image_mode_decodes_to_the_reference_picture(tmp_path, mode):
    """Each mode, written to disk and read back as the encoder gets it, against the 8-bit reference (a 16-bit PNG
    used to come out blank white)."""
    from mlr_core.cache import to_rgb8

    yy, xx = np.mgrid[0:32, 0:48]
    reference = Image.fromarray(np.stack([xx * 5, yy * 7, (xx + yy) * 3], -1).astype(np.uint8), "RGB")
    image, expected, *exif = _modes_of(reference)[mode]
    path = tmp_path / ("x.tiff" if mode in ("F", "I", "CMYK") else "x.png")
    image.save(path, **({"exif": exif[0]} if exif else {}))
    with Image.open(path) as im:
        got = np.asarray(to_rgb8(im), dtype=np.int16)
    assert got.shape == (32, 48, 3)
    assert np.abs(got - np.asarray(expected, dtype=np.int16)).max() <= 1, mode
    assert got.std() > 10  # a picture, not a flat field


def test_transparent_pixels_are_composited_onto_white():
    from mlr_core.cache import to_rgb8

    im = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    im.putpixel((0, 0), (10, 20, 30, 255))
    out = np.asarray(to_rgb8(im))
    assert out[0, 0].tolist() == [10, 20, 30] and out[3, 3].tolist() == [255, 255, 255]
    p = im.convert("P")  # palette with a transparent colour
    p.info["transparency"] = p.getpixel((3, 3))
    assert np.asarray(to_rgb8(p))[3, 3].tolist() == [255, 255, 255]


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(world, clip, tmp_path):
    from mlr_core.shards import OutputBusyError, ShardedWork

    out = tmp_path / "test.parquet"
    first = ShardedWork(tmp_path / "test.parquet.partial", {"other": "run"}, n_items=10, shard_size=4, what="feature cache")
    with pytest.raises(OutputBusyError, match=r"another run is writing .*test.parquet.partial now"):
        write_feature_cache(world, clip, out, batch_size=4, shard_size=4)
    assert not out.exists() and (tmp_path / "test.parquet.partial" / "state.json").exists()  # first run's untouched
    first.done()
    write_feature_cache(world, clip, out, batch_size=4, shard_size=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.parquet"]  # no work folder, no lock file left


def test_a_text_cache_resume_redoes_the_shard_whose_labels_changed(clip, tmp_path, monkeypatch, capsys):
    from mlr_core.cache import write_text_feature_cache

    texts = [f"a red star number {i}." for i in range(6)]
    ids, classes = [f"c{i}" for i in range(6)], [f"k{i}" for i in range(20)]
    labels = np.eye(6, 20, dtype=np.int8)
    out = tmp_path / "text.parquet"
    real = _killed_at_shard(monkeypatch, 3, "encode_text_features")
    with pytest.raises(KeyboardInterrupt):
        write_text_feature_cache(texts, ids, labels, classes, clip, out, batch_size=2, shard_size=2)
    monkeypatch.setattr(features_mod, "encode_text_features", real)
    labels[0, 5] = 1  # the same texts, relabelled: shard 0 is stale, shard 1 is not
    capsys.readouterr()
    write_text_feature_cache(texts, ids, labels, classes, clip, out, batch_size=2, shard_size=2)
    said = capsys.readouterr().out
    assert "shard 0 was made from other inputs" in said and "1 of 3 shards already done" in said
    clean = write_text_feature_cache(texts, ids, labels, classes, clip, tmp_path / "clean.parquet", batch_size=2,
                                     shard_size=2)
    assert out.read_bytes() == clean.read_bytes()


@pytest.mark.parametrize("cache_kind", ["images", "texts"])
def test_kills_at_random_points_with_an_input_change_between_them_end_as_a_clean_run(world, clip, tmp_path,
                                                                                    monkeypatch, cache_kind):
    """Three kills at seeded random batches; after the first, one label row changes (an image of shard 0, or a
    text): every resume keeps only current shards, and the finished cache is byte for byte a clean run's."""
    import dataclasses
    import random

    from mlr_core.cache import write_text_feature_cache

    rng = random.Random(f"cache-kills-{cache_kind}")
    texts, ids, classes = [f"a red star number {i}." for i in range(10)], [f"c{i}" for i in range(10)], world.classes
    old = world.targets.copy()
    new = old.copy()
    new[1] = 1 - new[1]

    def write(labels, out):
        if cache_kind == "images":
            return write_feature_cache(dataclasses.replace(world, targets=labels), clip, out, batch_size=2, shard_size=4)
        return write_text_feature_cache(texts, ids, labels, classes, clip, out, batch_size=2, shard_size=4)

    name = "encode_image_features" if cache_kind == "images" else "encode_text_features"
    real = getattr(features_mod, name)
    out, labels, kills = tmp_path / "cache.parquet", old, 0
    for round_ in range(3):
        _killed_at_shard(monkeypatch, rng.randrange(2, 5) if round_ else 4, name)  # the first: after shard 0
        try:
            write(labels, out)
        except KeyboardInterrupt:
            kills += 1
        monkeypatch.setattr(features_mod, name, real)
        labels = new
    assert kills >= 2
    write(new, out)
    assert out.read_bytes() == write(new, tmp_path / "clean.parquet").read_bytes()
