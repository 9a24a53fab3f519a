import json

import numpy as np
import pytest

from mlr_core.data.manifest import DatasetError
from mlr_core.text.mining import cap_rarest, mine_captions, read_text_lines, template_sentences
from mlr_core.text.noun_filter import SynonymTable

CLASSES = ["dog", "tie", "train", "cat"]
TABLE = SynonymTable.from_mapping({"dog": ["dog", "puppy"], "tie": ["tie", "necktie"], "train": ["train"],
                                   "cat": ["cat", "kitten"]}, CLASSES)


def coco_json(path, captions):
    path.write_text(json.dumps({"images": [{"id": i} for i, _ in captions],
                                "annotations": [{"image_id": i, "id": n, "caption": c}
                                                for n, (i, c) in enumerate(captions)]}))
    return path


def test_mining_labels_nouns_drops_classless_and_excludes_eval_images(tmp_path):
    coco = coco_json(tmp_path / "captions_train2017.json", [
        (1, "A dog sleeps next to a kitten."), (2, "A man ties his tie."), (3, "People train for a race."),
        (4, "An empty street at night."), (5, "A puppy on a train."),
    ])
    narratives = tmp_path / "narratives.jsonl"
    # one line of the official OpenImages localized narratives JSONL
    narratives.write_text(json.dumps({
        "dataset_id": "open_images", "image_id": "ab12", "annotator_id": 93,
        "caption": "In this image we can see a cat.",
        "timed_caption": [{"utterance": "In this image", "start_time": 0.0, "end_time": 0.9}],
        "traces": [[{"x": 0.27, "y": 0.52, "t": 0.79}]],
        "voice_recording": "open_images_validation/open_images_validation_ab12_93.ogg"}) + "\n")
    rows, summary = mine_captions([("coco", str(coco)), ("narratives", str(narratives))], TABLE,
                                  exclude_image_ids={"5"})
    got = {c: np.flatnonzero(l).tolist() for c, l in zip(rows["caption"], rows["labels"])}
    assert got == {"A dog sleeps next to a kitten.": [0, 3], "A man ties his tie.": [1],
                   "In this image we can see a cat.": [3]}
    assert summary["excluded_eval_images"] == 1 and summary["dropped_no_class"] == 2
    assert summary["per_class"] == {"dog": 1, "tie": 1, "train": 0, "cat": 2}
    assert summary["classes_without_captions"] == ["train"]
    assert rows["image_id"].tolist() == ["1", "2", "ab12"]


def test_text_source_reports_bad_lines(tmp_path, capsys):
    p = tmp_path / "corpus.txt"
    p.write_bytes(b"a dog on a sofa\n\n\xff\xfe broken\na cat\n")
    sentences, note = read_text_lines(p)
    assert [s.text for s in sentences] == ["a dog on a sofa", "a cat"]
    assert note == {"empty_lines": 1, "non_utf8_lines": 1}
    assert "1 line(s) are not UTF-8" in capsys.readouterr().out


def test_bad_corpora_say_what_is_wrong(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DatasetError, match="empty corpus"):
        mine_captions([("text", str(empty))], TABLE, exclude_image_ids=set())
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("an empty street\na blue sky\n")
    with pytest.raises(DatasetError, match="none of 2 sentences names a class"):
        mine_captions([("text", str(nothing))], TABLE, exclude_image_ids=set())
    with pytest.raises(ValueError, match="bird"):
        SynonymTable.from_mapping({"dog": ["dog"]}, ["dog", "bird"])


def test_templates_and_nus_cap():
    tmpl = template_sentences(["dog", "cat"], repeats=2)
    assert tmpl[0] == ("a photo of a dog.", 0) and len(tmpl) == 2 * (2 + 80)
    labels = np.array([[1, 1], [1, 0], [1, 0], [1, 1], [0, 1]], np.int8)  # class 1 is rarer
    keep = cap_rarest(labels, cap=2, seed=0)
    assigned = [1 if labels[i, 1] else 0 for i in keep]
    assert assigned.count(1) == 2 and assigned.count(0) == 2
