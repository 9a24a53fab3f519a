"""MS-COCO 2014 as the official release lays it out, and the COCO captions format.

Multi-label benchmark, :func:`read_coco2014` (``train2014.zip``, ``val2014.zip`` and
``annotations_trainval2014.zip`` extracted into ``root``)::

    root/annotations/instances_train2014.json   -> split "trainval" (82,783 images; 82,081 annotated)
    root/annotations/instances_val2014.json     -> split "test"     (40,504 images; 40,137 annotated)
    root/train2014/<file_name>                   e.g. COCO_train2014_000000000009.jpg
    root/val2014/<file_name>                     (file_name as written in the JSON's "images")

The 80 classes are the JSON ``categories`` sorted by id (ids 1..90 with gaps), checked against
:data:`COCO_CLASSES`. An image is positive for a class when it has any annotation of it (crowd
annotations included, as pycocotools' ``getAnnIds`` and the reference code count them). Images with no
annotation at all are dropped (``unannotated="drop"``, the DualCoOp reference: only the images in
``imgToAnns``) or kept as all-negative (``"negative"``). Images are in the JSON's ``images`` order;
``image_ids`` are ``str(id)``. Images missing on disk are reported once (one printed line) and skipped.

Captions, :func:`read_coco_captions`: ``captions_{train,val}{2014,2017}.json`` (``"images"`` and
``"annotations"`` with ``image_id``, ``id``, ``caption``), as the text-only training corpus.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlr_core.data.manifest import SPLITS, DatasetError, LabelledImages
from mlr_core.data.release import assemble_splits, check_splits, missing_part

#: The 80 official category names in category-id order (ids 1..90 with 10 unused ids).
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
UNANNOTATED_POLICIES = ("drop", "negative")

#: (annotation file, image folder, split)
_PARTS = (("instances_train2014.json", "train2014", "trainval"), ("instances_val2014.json", "val2014", "test"))


@dataclass(frozen=True)
class CocoCaption:
    image_id: int
    caption_id: int
    caption: str


def _load_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images' and 'annotations', got {type(data).__name__}")
    return data


def _field_list(data: dict, key: str, path: Path) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise DatasetError(f"{path}: no {key!r} list (not a COCO annotation file?)")
    return value


def _read_instances(path: Path, unannotated: str):
    """(file names, image ids, (N, 80) targets) of one instances file, annotations indexed by image id."""
    data = _load_json(path, "COCO instances annotation file")
    images = _field_list(data, "images", path)
    annotations = _field_list(data, "annotations", path)
    categories = _field_list(data, "categories", path)
    try:
        cats = sorted(((int(c["id"]), str(c["name"])) for c in categories))
        img_ids = [int(im["id"]) for im in images]
        files = [str(im["file_name"]) for im in images]
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: malformed 'categories' or 'images' entry ({type(e).__name__}: {e})") from None
    names = tuple(n for _, n in cats)
    if names != COCO_CLASSES:
        diff = next((f"position {k}: {a!r} instead of {b!r}" for k, (a, b) in enumerate(zip(names, COCO_CLASSES))
                     if a != b), f"{len(names)} categories instead of {len(COCO_CLASSES)}")
        raise DatasetError(f"{path}: categories (sorted by id) are not the 80 COCO classes ({diff})")
    col = {cid: k for k, (cid, _) in enumerate(cats)}
    row = {iid: k for k, iid in enumerate(img_ids)}
    if len(row) != len(img_ids):
        raise DatasetError(f"{path}: duplicate image ids in 'images'")
    targets = np.zeros((len(img_ids), len(cats)), np.int8)
    annotated = np.zeros(len(img_ids), bool)
    for k, ann in enumerate(annotations):
        try:
            r, c = row[ann["image_id"]], col[ann["category_id"]]
        except (KeyError, TypeError):
            raise DatasetError(f"{path}: annotation #{k} (id {ann.get('id') if isinstance(ann, dict) else '?'}) has "
                               f"a missing or unknown image_id / category_id") from None
        targets[r, c] = 1
        annotated[r] = True
    keep = np.ones(len(img_ids), bool) if unannotated == "negative" else annotated
    return ([f for f, k in zip(files, keep) if k], [str(i) for i, k in zip(img_ids, keep) if k], targets[keep])


def read_coco2014(root: str | Path, unannotated: str, splits=SPLITS) -> LabelledImages:
    """MS-COCO 2014 (the parts ``splits``): train2014 -> "trainval", val2014 -> "test", 80 classes (see module
    docstring)."""
    if unannotated not in UNANNOTATED_POLICIES:
        raise ValueError(f"dataset.coco_unannotated must be one of {list(UNANNOTATED_POLICIES)}, got {unannotated!r}")
    splits = check_splits(splits)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: COCO 2014 root not found (expected annotations/instances_{{train,val}}2014.json, "
                           f"train2014/ and val2014/ under it)")
    parts = []
    for ann_name, folder, split in _PARTS:
        if split not in splits:
            continue
        ann = root / "annotations" / ann_name
        if not ann.is_file():
            raise missing_part("coco2014", split, ann, " (it is in annotations_trainval2014.zip)")
        files, ids, targets = _read_instances(ann, unannotated)
        parts.append((root / folder, files, ids, targets, split))  # json objects of this file are freed here

    return assemble_splits("coco2014", COCO_CLASSES,
                           [([folder / f for f in files], ids, [f"{folder.name}/{f}" for f in files], targets, split)
                            for folder, files, ids, targets, split in parts], root)


def read_coco_captions(path: str | Path) -> list[CocoCaption]:
    """All captions of a ``captions_*.json`` file in file order; stripped, empty ones skipped."""
    path = Path(path)
    data = _load_json(path, "COCO captions file")
    annotations = _field_list(data, "annotations", path)
    out = []
    for k, ann in enumerate(annotations):
        try:
            image_id, caption_id, caption = int(ann["image_id"]), int(ann["id"]), ann["caption"]
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}: annotation #{k} lacks an integer 'image_id' / 'id' or a 'caption'") from None
        if not isinstance(caption, str):
            raise DatasetError(f"{path}: annotation #{k} (id {caption_id}): 'caption' is not a string")
        caption = caption.strip()
        if caption:
            out.append(CocoCaption(image_id, caption_id, caption))
    return out
