import json
import re

import numpy as np

from mlr_core.data.manifest import read_manifest
from mlr_core.data.tinyworld import (CLASSES, SYNONYMS, Scene, caption_scene, render_scene, sample_scene,
                                     write_tinyworld)


def test_twenty_distinct_classes_and_renders():
    assert len(CLASSES) == 20 == len(set(CLASSES)) == len(SYNONYMS)
    rng = np.random.default_rng(0)
    masks = []
    for c in range(len(CLASSES)):
        scene = Scene((sample_scene(rng).objects[0].__class__(c, "black", "large", 0.5, 0.5, 0.0),), (255, 255, 255))
        img = np.asarray(render_scene(scene, 64)).mean(-1) < 128
        assert img.sum() > 30, CLASSES[c]
        masks.append(img)
    # visually distinct: every pair of silhouettes differs in a good share of pixels; circle vs hexagon
    # is the one deliberately close (fine-grained) pair, told apart by its corners.
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            diff = (masks[i] ^ masks[j]).sum() / max(masks[i].sum(), masks[j].sum())
            close_pair = {CLASSES[i], CLASSES[j]} == {"circle", "hexagon"}
            assert diff > (0.07 if close_pair else 0.14), (CLASSES[i], CLASSES[j], diff)


def test_scenes_and_captions_are_seeded_and_round_trip():
    a = [sample_scene(np.random.default_rng(3)) for _ in range(2)]
    b = [sample_scene(np.random.default_rng(3)) for _ in range(2)]
    assert a == b and Scene.from_json(a[0].to_json()) == a[0]
    s = a[0]
    assert caption_scene(s, np.random.default_rng(1)) == caption_scene(s, np.random.default_rng(1))
    assert np.array_equal(np.asarray(render_scene(s, 32)), np.asarray(render_scene(s, 32)))


def test_full_captions_name_every_class():
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = sample_scene(rng)
        cap = caption_scene(s, rng, partial_prob=0.0)
        for c in s.labels:
            forms = [w for pair in SYNONYMS[CLASSES[c]] for w in pair]
            assert any(re.search(rf"\b{re.escape(f)}\b", cap) for f in forms), (cap, CLASSES[c])


def test_grammar_has_the_hard_cases():
    rng = np.random.default_rng(0)
    caps = [caption_scene(sample_scene(rng), rng, 0.3) for _ in range(3000)]
    text = " ".join(caps)
    for needle in ("crossing", "starring", "square-shaped", "lightning bolt", "two ", "three "):
        assert needle in text, needle
    colour_words = sum(any(c in cap.split() for c in ("red", "blue", "green", "black")) for cap in caps)
    assert 0.05 < colour_words / len(caps) < 0.6


def test_write_tinyworld_parts(tmp_path):
    out = tmp_path / "tw"
    summary = write_tinyworld(out, seed=0, image_size=32, min_objects=1, max_objects=4,
                              n_corpus=10, captions_per_scene=3, n_trainval=6, n_test=5)
    assert summary["corpus_captions"] == 30
    assert sorted(p.name for p in out.iterdir()) == ["benchmark", "captions", "summary.json"]  # (a) is drawn, not stored
    coco = json.loads((out / "captions" / "captions_tinyworld.json").read_text())
    assert {"images", "annotations"} <= set(coco) and len(coco["annotations"]) == 30
    assert {a["image_id"] for a in coco["annotations"]} == {i["id"] for i in coco["images"]}
    data = read_manifest(out / "benchmark" / "manifest.csv", out / "benchmark" / "classes.txt")
    assert data.classes == list(CLASSES)
    assert data.splits.count("trainval") == 6 and data.splits.count("test") == 5
    assert (data.targets.sum(1) >= 1).all()
    # a second run with the same params writes identical files
    write_tinyworld(tmp_path / "tw2", seed=0, image_size=32, min_objects=1, max_objects=4,
                    n_corpus=10, captions_per_scene=3, n_trainval=6, n_test=5)
    for rel in ("benchmark/manifest.csv", "captions/captions_tinyworld.json", "benchmark/images/test/test_000004.png"):
        assert (out / rel).read_bytes() == (tmp_path / "tw2" / rel).read_bytes()


def test_pretraining_scenes_are_a_prefix_stream():
    """The pretraining stages draw part (a) themselves: the first n scenes of a longer draw are the n-scene
    draw, so pretrain_t2i's n_scenes and pretrain_clip's n_pretrain share their scenes."""
    from mlr_core.data.tinyworld import sample_scenes

    assert sample_scenes(30, 0, "pretrain", 1, 4)[:12] == sample_scenes(12, 0, "pretrain", 1, 4)
    assert sample_scenes(12, 0, "pretrain", 1, 4) != sample_scenes(12, 1, "pretrain", 1, 4)
