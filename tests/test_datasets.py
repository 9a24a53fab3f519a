"""The benchmark readers on tiny copies laid out exactly as the official releases (tests/fixtures_real.py)."""
import json
import shutil
import typing

import numpy as np
import pytest
import yaml

from fixtures_real import (COCO_CAPTIONS, COCO_CATEGORIES, COCO_IMAGES, COCO_MISSING, NUSWIDE_CLASSES,
                           NUSWIDE_IMAGES, NUSWIDE_MISSING, VOC_CLASSES, VOC_CORRUPT, VOC_IMAGES, VOC_MISSING,
                           coco_file_name, make_coco2014, make_nuswide, make_voc2007, voc_flag)
from mlr_core.data.coco import COCO_CLASSES, CocoCaption, read_coco2014, read_coco_captions
from mlr_core.data.datasets import DATASET_NAMES, builtin_classes, load_dataset
from mlr_core.data.manifest import DatasetError
from mlr_core.data.nuswide import read_nuswide
from mlr_core.text.noun_filter import SYNONYM_DIR
from mlr_core.data.voc import read_voc2007
from mlr_core.metrics import IGNORE


def one_report_line(capsys, dataset, count):
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{dataset}: {count} of ")
    return lines[0]


# ------------------------------------------------------------------------------------------------ VOC 2007
@pytest.fixture
def voc(tmp_path):
    return make_voc2007(tmp_path / "data", corrupt=True)


def voc_expected(image_id, zero):
    flags = [voc_flag(VOC_IMAGES[image_id][1], c) for c in VOC_CLASSES]
    return [1 if f == 1 else (zero if f == 0 else 0) for f in flags]


@pytest.mark.parametrize("sub", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_voc_labels_splits_ids(voc, sub, capsys):
    d = read_voc2007(voc / sub if sub else voc, "ignore")
    assert d.classes == list(VOC_CLASSES)
    kept = sorted(i for i in VOC_IMAGES if i not in VOC_MISSING)
    assert sorted(d.image_ids) == kept and all(isinstance(i, str) and len(i) == 6 for i in d.image_ids)
    # order: trainval list then test list, each as listed (sorted in the official files)
    assert d.image_ids == ["000005", "000007", "000009", "000012", "000001", "000002", "000004", "000006"]
    assert d.splits == ["trainval"] * 4 + ["test"] * 4
    assert d.targets.dtype == np.int8 and d.targets.shape == (8, 20)
    for k, i in enumerate(d.image_ids):
        assert d.targets[k].tolist() == voc_expected(i, IGNORE), i
        assert d.paths[k] == voc / "VOCdevkit" / "VOC2007" / "JPEGImages" / f"{i}.jpg"
    t = dict(zip(d.image_ids, d.targets))
    C = VOC_CLASSES.index
    assert t["000004"][C("bottle")] == IGNORE and t["000004"][C("car")] == 1     # difficult only -> ignored
    assert t["000009"][C("person")] == 1                                           # difficult + normal -> positive
    assert t["000005"][C("diningtable")] == IGNORE and t["000005"][C("chair")] == 1
    assert VOC_CORRUPT in d.image_ids  # readers do not decode images: a corrupt file is just listed
    line = one_report_line(capsys, "voc2007", 2)
    assert "2 of 10" in line and "000008.jpg" in line and "000010.jpg" in line


def test_voc_difficult_negative(voc, capsys):
    ign, neg = read_voc2007(voc, "ignore"), read_voc2007(voc, "negative")
    assert ign.image_ids == neg.image_ids
    assert (neg.targets >= 0).all()
    assert (neg.targets == np.where(ign.targets == IGNORE, 0, ign.targets)).all()
    assert (ign.targets == IGNORE).sum() == 3


def test_voc_xml_fallback_equals_class_files(voc, capsys):
    main = voc / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    for policy in ("ignore", "negative"):
        want = read_voc2007(voc, difficult=policy)
        for f in main.glob("*_*.txt"):
            f.rename(f.with_suffix(".bak"))
        got = read_voc2007(voc, difficult=policy)
        for f in main.glob("*.bak"):
            f.rename(f.with_suffix(".txt"))
        assert got.image_ids == want.image_ids and (got.targets == want.targets).all()


def test_voc_errors(voc, tmp_path, capsys):
    with pytest.raises(ValueError, match="dataset.voc_difficult"):
        read_voc2007(voc, difficult="zero")
    with pytest.raises(DatasetError, match="nowhere: VOC2007 root not found"):
        read_voc2007(tmp_path / "nowhere", "ignore")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: not a VOC2007 folder; expected VOCdevkit/VOC2007/.*ImageSets/Main"):
        read_voc2007(tmp_path / "empty", "ignore")
    main = voc / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    good = (main / "aeroplane_trainval.txt").read_text()
    (main / "aeroplane_trainval.txt").write_text(good.replace("000009 -1", "000009 yes"))
    with pytest.raises(DatasetError, match=r"aeroplane_trainval.txt:3: expected '<id> <flag>'"):
        read_voc2007(voc, "ignore")
    (main / "aeroplane_trainval.txt").write_text(good.replace("000009 -1\n", ""))
    with pytest.raises(DatasetError, match=r"aeroplane_trainval.txt: no line for image 000009"):
        read_voc2007(voc, "ignore")
    (main / "aeroplane_trainval.txt").write_text(good)
    (main / "test.txt").write_text("000001\n000002 000004\n")
    with pytest.raises(DatasetError, match=r"test.txt:2: expected one image id per line"):
        read_voc2007(voc, "ignore")
    (main / "test.txt").unlink()
    with pytest.raises(DatasetError, match=r"voc2007: the test part is not there .*test.txt not found.*VOCtest_06-Nov-2007.tar"):
        read_voc2007(voc, "ignore")


# ------------------------------------------------------------------------------------------------ COCO 2014
@pytest.fixture
def coco(tmp_path):
    return make_coco2014(tmp_path / "coco", corrupt=True)


def coco_expected(image_id):
    row = [0] * 80
    for name, _ in COCO_IMAGES[image_id][1]:
        row[COCO_CLASSES.index(name)] = 1
    return row


def test_coco_classes_are_the_official_80():
    assert len(COCO_CLASSES) == 80 == len(set(COCO_CLASSES))
    assert list(COCO_CLASSES) == [name for _, name, _ in sorted(COCO_CATEGORIES)]
    assert COCO_CLASSES[:3] == ("person", "bicycle", "car") and COCO_CLASSES[-1] == "toothbrush"


def test_coco_drop_unannotated(coco, capsys):
    d = read_coco2014(coco, "drop")
    assert d.classes == list(COCO_CLASSES)
    assert d.image_ids == ["9", "25", "30", "34", "42", "73", "74"]
    assert d.splits == ["trainval"] * 4 + ["test"] * 3
    for k, i in enumerate(d.image_ids):
        assert d.targets[k].tolist() == coco_expected(int(i))
        folder = COCO_IMAGES[int(i)][0]
        assert d.paths[k] == coco / folder / coco_file_name(int(i), folder)
    assert d.targets[d.image_ids.index("74"), 0] == 1  # crowd-only "person" counts
    line = one_report_line(capsys, "coco2014", 1)
    assert "1 of 8" in line and coco_file_name(COCO_MISSING[0], "val2014") in line


def test_coco_unannotated_negative(coco, capsys):
    d = read_coco2014(coco, unannotated="negative")
    assert d.image_ids == ["9", "25", "30", "34", "61", "42", "73", "74", "133"]
    for i in ("61", "133"):
        assert (d.targets[d.image_ids.index(i)] == 0).all()
    assert "1 of 10" in one_report_line(capsys, "coco2014", 1)


def test_coco_errors(coco, tmp_path, capsys):
    with pytest.raises(ValueError, match="dataset.coco_unannotated"):
        read_coco2014(coco, unannotated="keep")
    with pytest.raises(DatasetError, match="nowhere: COCO 2014 root not found"):
        read_coco2014(tmp_path / "nowhere", "drop")
    val = coco / "annotations" / "instances_val2014.json"
    data = json.loads(val.read_text())
    good = json.dumps(data)
    next(c for c in data["categories"] if c["name"] == "tv")["name"] = "tvmonitor"
    val.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"instances_val2014.json: categories .* 'tvmonitor' instead of 'tv'"):
        read_coco2014(coco, "drop")
    data["categories"] = data["categories"][:20]
    val.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"instances_val2014.json: .*20 categories instead of 80"):
        read_coco2014(coco, "drop")
    val.write_text(good[:-10])
    with pytest.raises(DatasetError, match=r"instances_val2014.json: not valid JSON"):
        read_coco2014(coco, "drop")
    val.unlink()
    with pytest.raises(DatasetError, match=r"coco2014: the test part is not there .*instances_val2014.json not found"):
        read_coco2014(coco, "drop")
    shutil.rmtree(coco / "train2014")  # a split with no image on disk at all is an error, not a silent gap
    val.write_text(good)
    with pytest.raises(DatasetError, match=r"no image of split 'trainval' found on disk"):
        read_coco2014(coco, "drop")


def test_coco_captions(coco, tmp_path):
    caps = read_coco_captions(coco / "annotations" / "captions_train2014.json")
    want = [CocoCaption(i, c, t.strip()) for i, c, t in COCO_CAPTIONS["train2014"] if t.strip()]
    assert caps == want and len(caps) == 4
    assert caps[1].caption == "A meal is presented in brightly colored plastic trays."
    assert [c.image_id for c in read_coco_captions(coco / "annotations" / "captions_val2014.json")] == [42, 73]
    with pytest.raises(DatasetError, match=r"captions_train2017.json: COCO captions file not found"):
        read_coco_captions(coco / "annotations" / "captions_train2017.json")
    bad = tmp_path / "captions_bad.json"
    bad.write_text('{"images": [], "annotations": [')
    with pytest.raises(DatasetError, match=r"captions_bad.json: not valid JSON"):
        read_coco_captions(bad)
    bad.write_text('{"images": []}')
    with pytest.raises(DatasetError, match=r"captions_bad.json: no 'annotations' list"):
        read_coco_captions(bad)
    bad.write_text('{"annotations": [{"image_id": 1, "caption": "x"}]}')
    with pytest.raises(DatasetError, match=r"captions_bad.json: annotation #0"):
        read_coco_captions(bad)


# ------------------------------------------------------------------------------------------------ NUS-WIDE
@pytest.fixture
def nus(tmp_path):
    return make_nuswide(tmp_path / "nus", corrupt=True)


def test_nuswide(nus, capsys):
    d = read_nuswide(nus)
    assert d.classes == list(NUSWIDE_CLASSES) and len(d.classes) == 81
    want = [r.replace("\\", "/") for r in NUSWIDE_IMAGES if r.replace("\\", "/") not in NUSWIDE_MISSING]
    assert d.image_ids == want
    assert d.splits == ["trainval"] * 4 + ["test"] * 2
    for k, rel in enumerate(d.image_ids):
        assert d.paths[k] == nus / "Flickr" / rel and d.paths[k].is_file()
        positives = NUSWIDE_IMAGES[rel.replace("/", "\\")][1]
        assert sorted(np.array(d.classes)[d.targets[k] == 1]) == sorted(positives)
    assert (d.targets[d.image_ids.index("cat/0003_1178322407.jpg")] == 0).all()  # no positive: kept
    line = one_report_line(capsys, "nuswide", 1)
    assert "1 of 7" in line and NUSWIDE_MISSING[0] in line


def test_nuswide_errors(nus, tmp_path, capsys):
    with pytest.raises(DatasetError, match="nowhere: NUS-WIDE root not found"):
        read_nuswide(tmp_path / "nowhere")
    labels = nus / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt"
    good = labels.read_text()
    labels.write_text(good + "0\n")
    with pytest.raises(DatasetError, match=r"Labels_sky_Test.txt: 4 labels but TestImagelist.txt lists 3 images"):
        read_nuswide(nus)
    labels.write_text(good.replace("1", "2", 1))
    with pytest.raises(DatasetError, match=r"Labels_sky_Test.txt:2: expected 0 or 1, got '2'"):
        read_nuswide(nus)
    labels.unlink()
    with pytest.raises(DatasetError, match=r"Labels_sky_Test.txt: label file not found"):
        read_nuswide(nus)
    (nus / "Concepts81.txt").unlink()
    with pytest.raises(DatasetError, match=r"Concepts81.txt: class list not found"):
        read_nuswide(nus)


# ------------------------------------------------------------------------------------------------ dispatch
POLICY = dict(manifest="manifest.csv", classes="classes.txt", voc_difficult="ignore", coco_unannotated="drop")


def test_load_dataset_dispatch(tmp_path, capsys):
    assert load_dataset("voc2007", make_voc2007(tmp_path / "v"), **{**POLICY, "voc_difficult": "negative"}
                        ).targets.min() == 0
    assert len(load_dataset("coco2014", make_coco2014(tmp_path / "c"), **{**POLICY, "coco_unannotated": "negative"})) == 9
    assert len(load_dataset("nuswide", make_nuswide(tmp_path / "n"), **POLICY)) == 6
    m = tmp_path / "m"
    m.mkdir()
    (m / "a.png").write_bytes(b"x")
    (m / "classes.txt").write_text("cat\ndog\n")
    (m / "manifest.csv").write_text("image,split,labels\na.png,test,dog\n")
    for name in ("tinyworld", "manifest"):
        assert load_dataset(name, m, **POLICY, splits=["test"]).targets.tolist() == [[0, 1]]
        with pytest.raises(DatasetError, match=f"{name}: the trainval part is not there"):
            load_dataset(name, m, **POLICY)
    with pytest.raises(ValueError, match="dataset.name: unknown dataset 'voc2012'; known: tinyworld, manifest, voc2007"):
        load_dataset("voc2012", tmp_path, **POLICY)
    with pytest.raises(ValueError, match="dataset.voc_difficult"):
        load_dataset("voc2007", tmp_path / "v", **{**POLICY, "voc_difficult": "bad"})
    with pytest.raises(ValueError, match="splits must be"):
        load_dataset("voc2007", tmp_path / "v", **POLICY, splits=["val"])


@pytest.mark.parametrize("name", ["voc2007", "coco2014", "nuswide"])
def test_a_release_holding_only_its_test_part(tmp_path, name):
    """Zero-shot evaluation needs only the test images: a folder with only the test part of the release
    loads for splits=[test]; asking for trainval names the missing part in one line."""
    import fixtures_real

    root = getattr(fixtures_real, f"make_{name}")(tmp_path / name, parts=("test",))
    full = load_dataset(name, getattr(fixtures_real, f"make_{name}")(tmp_path / "full"), **POLICY)
    test = load_dataset(name, root, **POLICY, splits=["test"])
    assert set(test.splits) == {"test"} and test.image_ids == full.subset("test").image_ids
    assert (test.targets == full.subset("test").targets).all()
    with pytest.raises(DatasetError, match=f"{name}: the trainval part is not there .*zero-shot evaluation does not"):
        load_dataset(name, root, **POLICY)
    # the trainval part alone is as usable for the label budgets
    only_trainval = getattr(fixtures_real, f"make_{name}")(tmp_path / "tv", parts=("trainval",))
    assert load_dataset(name, only_trainval, **POLICY, splits=["trainval"]).image_ids == \
        full.subset("trainval").image_ids


def test_dataset_names_match_params():
    from mlr_core.config import DatasetParams
    assert typing.get_args(DatasetParams.model_fields["name"].annotation) == DATASET_NAMES


def test_nuswide_class_list_is_concepts81():
    """The one built-in NUS-WIDE list: the 81 names of the commonly distributed Concepts81.txt (alphabetical,
    singular "toy", plural "birds"), the order the synonym table is keyed in."""
    names = builtin_classes("nuswide")
    assert len(set(names)) == 81 and list(names) == sorted(names)
    assert {"toy", "birds", "nighttime", "whales", "zebra"} <= set(names) and "toys" not in names
    assert list(yaml.safe_load((SYNONYM_DIR / "nuswide.yaml").read_text())) == list(names)
    with pytest.raises(ValueError, match="unknown dataset 'foo'"):
        builtin_classes("foo")
