r"""Tiny copies of the real benchmarks, laid out exactly as their official releases are.

``make_voc2007(root)``, ``make_coco2014(root)`` and ``make_nuswide(root)`` write a handful of 32x32
JPEGs plus the real annotation files (real file names, folder layout and file formats) and return the
root to give the reader / ``dataset.root``. Like users' real copies, each has images that are listed
but missing on disk (``missing=True``); ``corrupt=True`` also writes one listed JPEG as garbage bytes
(the readers do not decode images, later stages must cope). The ``*_EXPECTED`` tables below say what
a reader must return.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from mlr_core.data.nuswide import NUSWIDE_CLASSES

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

# id -> (split, [(object name, difficult)])
VOC_IMAGES: dict[str, tuple[str, list[tuple[str, int]]]] = {
    "000005": ("trainval", [("chair", 0), ("chair", 0), ("pottedplant", 1), ("diningtable", 1)]),
    "000007": ("trainval", [("car", 0)]),
    "000009": ("trainval", [("horse", 0), ("person", 0), ("person", 1)]),  # difficult + non-difficult: positive
    "000010": ("trainval", [("horse", 0)]),                                # JPEG missing on disk
    "000012": ("trainval", [("car", 0)]),                                  # corrupt JPEG with corrupt=True
    "000001": ("test", [("dog", 0), ("person", 0)]),
    "000002": ("test", [("train", 0)]),
    "000004": ("test", [("car", 0), ("bottle", 1)]),                      # bottle: difficult only
    "000006": ("test", [("pottedplant", 0), ("diningtable", 0), ("chair", 1), ("chair", 0)]),
    "000008": ("test", [("chair", 0)]),                                    # JPEG missing on disk
}
VOC_MISSING = ("000010", "000008")
VOC_CORRUPT = "000012"
VOC_TRAIN_VAL = {"000005": "train", "000007": "val", "000009": "train", "000010": "val", "000012": "val"}

# (id, name, supercategory) of the 80 COCO categories, as in instances_*2014.json
COCO_CATEGORIES = [
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"),
    (20, "sheep", "animal"), (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"),
    (24, "zebra", "animal"), (25, "giraffe", "animal"), (27, "backpack", "accessory"),
    (28, "umbrella", "accessory"), (31, "handbag", "accessory"), (32, "tie", "accessory"),
    (33, "suitcase", "accessory"), (34, "frisbee", "sports"), (35, "skis", "sports"), (36, "snowboard", "sports"),
    (37, "sports ball", "sports"), (38, "kite", "sports"), (39, "baseball bat", "sports"),
    (40, "baseball glove", "sports"), (41, "skateboard", "sports"), (42, "surfboard", "sports"),
    (43, "tennis racket", "sports"), (44, "bottle", "kitchen"), (46, "wine glass", "kitchen"),
    (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"), (50, "spoon", "kitchen"),
    (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"), (54, "sandwich", "food"),
    (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"), (58, "hot dog", "food"),
    (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"), (62, "chair", "furniture"),
    (63, "couch", "furniture"), (64, "potted plant", "furniture"), (65, "bed", "furniture"),
    (67, "dining table", "furniture"), (70, "toilet", "furniture"), (72, "tv", "electronic"),
    (73, "laptop", "electronic"), (74, "mouse", "electronic"), (75, "remote", "electronic"),
    (76, "keyboard", "electronic"), (77, "cell phone", "electronic"), (78, "microwave", "appliance"),
    (79, "oven", "appliance"), (80, "toaster", "appliance"), (81, "sink", "appliance"),
    (82, "refrigerator", "appliance"), (84, "book", "indoor"), (85, "clock", "indoor"), (86, "vase", "indoor"),
    (87, "scissors", "indoor"), (88, "teddy bear", "indoor"), (89, "hair drier", "indoor"),
    (90, "toothbrush", "indoor"),
]
_COCO_ID = {name: cid for cid, name, _ in COCO_CATEGORIES}

# image id -> (folder, [(category name, iscrowd)]); an empty list is an image without annotations
COCO_IMAGES: dict[int, tuple[str, list[tuple[str, int]]]] = {
    9: ("train2014", [("bowl", 0), ("bowl", 0), ("broccoli", 0), ("orange", 0)]),
    25: ("train2014", [("giraffe", 0), ("giraffe", 0)]),
    30: ("train2014", [("potted plant", 0), ("vase", 0)]),
    34: ("train2014", [("zebra", 0)]),              # corrupt JPEG with corrupt=True
    61: ("train2014", []),                          # no annotation
    42: ("val2014", [("dog", 0)]),
    73: ("val2014", [("motorcycle", 0)]),
    74: ("val2014", [("dog", 0), ("person", 1)]),     # a crowd annotation still makes "person" positive
    133: ("val2014", []),                           # no annotation
    139: ("val2014", [("person", 0), ("tv", 0)]),   # image file missing on disk
}
COCO_MISSING = (139,)
COCO_CORRUPT = 34
COCO_CAPTIONS = {  # (split, image id, caption id, caption as written, with its stray whitespace)
    "train2014": [(9, 661611, "Closeup of bins of food that include broccoli and bread."),
                  (9, 661977, "A meal is presented in brightly colored plastic trays.\n"),
                  (25, 122, " A giraffe eating food from the top of the tree."),
                  (25, 136, "   "),  # empty after stripping: skipped
                  (30, 714, "A flower vase is sitting on a porch stand.")],
    "val2014": [(42, 641, "This wire metal rack holds several pairs of shoes and sandals"),
                (73, 7019, "A motorcycle parked in a parking space next to another motorcycle.")],
}

# relative path as in the image lists -> (split, positive concepts)
NUSWIDE_IMAGES: dict[str, tuple[str, list[str]]] = {
    "actor\\0001_2124494179.jpg": ("trainval", ["person"]),
    "airport\\0001_1105765008.jpg": ("trainval", ["airport", "plane", "sky"]),
    "beach\\0002_2364134545.jpg": ("trainval", ["beach", "ocean", "sand", "sky", "water"]),
    "cat\\0003_1178322407.jpg": ("trainval", []),         # no positive concept: kept, all-negative
    "dog\\0001_2301455467.jpg": ("test", ["dog", "grass", "animal"]),
    "sunset\\0004_532563716.jpg": ("test", ["sun", "sunset", "sky", "clouds"]),
    "tiger\\0002_2442573393.jpg": ("test", ["tiger", "animal"]),  # missing on disk
}
NUSWIDE_MISSING = ("tiger/0002_2442573393.jpg",)
NUSWIDE_CORRUPT = "beach/0002_2364134545.jpg"


def _jpeg(path: Path, seed: int, corrupt: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if corrupt:
        path.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
        return
    Image.new("RGB", (32, 32), ((seed * 53) % 256, (seed * 97) % 256, (seed * 31) % 256)).save(path, "JPEG")


# ----------------------------------------------------------------------------------------------- VOC
def _voc_xml(image_id: str, objects: list[tuple[str, int]]) -> str:
    objs = "".join(
        f"""
	<object>
		<name>{name}</name>
		<pose>{("Left", "Right", "Frontal", "Unspecified")[k % 4]}</pose>
		<truncated>{k % 2}</truncated>
		<difficult>{difficult}</difficult>
		<bndbox>
			<xmin>{1 + k}</xmin>
			<ymin>{2 + k}</ymin>
			<xmax>{20 + k}</xmax>
			<ymax>{28 + k}</ymax>
		</bndbox>
	</object>""" for k, (name, difficult) in enumerate(objects))
    return f"""<annotation>
	<folder>VOC2007</folder>
	<filename>{image_id}.jpg</filename>
	<source>
		<database>The VOC2007 Database</database>
		<annotation>PASCAL VOC2007</annotation>
		<image>flickr</image>
		<flickrid>{int(image_id) * 7919}</flickrid>
	</source>
	<owner>
		<flickrid>someone</flickrid>
		<name>?</name>
	</owner>
	<size>
		<width>32</width>
		<height>32</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>{objs}
</annotation>
"""


def voc_flag(objects: list[tuple[str, int]], cls: str) -> int:
    """The official per-class flag: 1 present, -1 absent, 0 only difficult instances."""
    diffs = [d for name, d in objects if name == cls]
    return -1 if not diffs else (1 if 0 in diffs else 0)


SPLITS = ("trainval", "test")


def make_voc2007(root: str | Path, missing: bool = True, corrupt: bool = False, parts=SPLITS) -> Path:
    """``root/VOCdevkit/VOC2007/...`` (trainval and test tars merged, as extracting both gives; ``parts``:
    which of the two tars were extracted); returns root."""
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2007"
    main = voc / "ImageSets" / "Main"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main", "ImageSets/Layout", "ImageSets/Segmentation",
                "SegmentationClass", "SegmentationObject"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for k, (image_id, (split, objects)) in enumerate(VOC_IMAGES.items()):
        if split not in parts:
            continue
        (voc / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, objects))
        if not (missing and image_id in VOC_MISSING):
            _jpeg(voc / "JPEGImages" / f"{image_id}.jpg", k, corrupt=corrupt and image_id == VOC_CORRUPT)
    lists = {
        "trainval": [i for i, (s, _) in VOC_IMAGES.items() if s == "trainval"],
        "train": [i for i, s in VOC_TRAIN_VAL.items() if s == "train"],
        "val": [i for i, s in VOC_TRAIN_VAL.items() if s == "val"],
        "test": [i for i, (s, _) in VOC_IMAGES.items() if s == "test"],
    }
    for split, ids in lists.items():
        if ("test" if split == "test" else "trainval") not in parts:
            continue
        ids = sorted(ids)  # the official lists are sorted
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for cls in VOC_CLASSES:  # official format: "%s %2d"
            (main / f"{cls}_{split}.txt").write_text(
                "".join(f"{i} {voc_flag(VOC_IMAGES[i][1], cls):2d}\n" for i in ids))
    return root


# ----------------------------------------------------------------------------------------------- COCO
_COCO_INFO = {"description": "This is stable 1.0 version of the 2014 MS COCO dataset.", "url": "http://mscoco.org",
              "version": "1.0", "year": 2014, "contributor": "Microsoft COCO group",
              "date_created": "2015-01-27 09:11:52.357475"}
_COCO_LICENSES = [
    {"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
     "name": "Attribution-NonCommercial-ShareAlike License"},
    {"url": "http://creativecommons.org/licenses/by-nc/2.0/", "id": 2, "name": "Attribution-NonCommercial License"},
    {"url": "http://creativecommons.org/licenses/by/2.0/", "id": 4, "name": "Attribution License"},
]


def coco_file_name(image_id: int, folder: str) -> str:
    return f"COCO_{folder}_{image_id:012d}.jpg"


def _coco_images(folder: str) -> list[dict]:
    return [{"license": 1 + iid % 3, "file_name": coco_file_name(iid, folder),
             "coco_url": f"http://mscoco.org/images/{iid}", "height": 32, "width": 32,
             "date_captured": "2013-11-14 16:28:13", "flickr_url": f"http://farm4.staticflickr.com/{iid}.jpg",
             "id": iid} for iid, (f, _) in COCO_IMAGES.items() if f == folder]


def make_coco2014(root: str | Path, missing: bool = True, corrupt: bool = False, parts=SPLITS) -> Path:
    """``root/annotations/{instances,captions}_{train,val}2014.json``, ``root/{train,val}2014/`` (``parts``:
    train2014 is trainval, val2014 test); returns root."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in COCO_CATEGORIES]
    ann_id = 1000
    for folder in ("train2014", "val2014"):
        if {"train2014": "trainval", "val2014": "test"}[folder] not in parts:
            continue
        annotations = []
        for iid, (f, objects) in COCO_IMAGES.items():
            if f != folder:
                continue
            if not (missing and iid in COCO_MISSING):
                _jpeg(root / folder / coco_file_name(iid, folder), iid, corrupt=corrupt and iid == COCO_CORRUPT)
            for k, (name, crowd) in enumerate(objects):
                ann_id += 1
                x, y, w, h = 1.5 + k, 2.25, 12.0, 10.5
                seg = ({"counts": [66, 4, 28, 4, 922], "size": [32, 32]} if crowd
                       else [[x, y, x + w, y, x + w, y + h, x, y + h]])
                annotations.append({"segmentation": seg, "area": w * h, "iscrowd": crowd, "image_id": iid,
                                    "bbox": [x, y, w, h], "category_id": _COCO_ID[name], "id": ann_id})
        instances = {"info": _COCO_INFO, "images": _coco_images(folder), "licenses": _COCO_LICENSES,
                     "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(instances))
        captions = {"info": _COCO_INFO, "images": _coco_images(folder), "licenses": _COCO_LICENSES,
                    "annotations": [{"image_id": iid, "id": cid, "caption": cap}
                                    for iid, cid, cap in COCO_CAPTIONS[folder]]}
        (root / "annotations" / f"captions_{folder}.json").write_text(json.dumps(captions))
    return root


# ----------------------------------------------------------------------------------------------- NUS-WIDE
def make_nuswide(root: str | Path, missing: bool = True, corrupt: bool = False, parts=SPLITS) -> Path:
    """``root/{Concepts81.txt, ImageList/, Groundtruth/TrainTestLabels/, Flickr/}``; returns root."""
    root = Path(root)
    (root / "ImageList").mkdir(parents=True, exist_ok=True)
    labels_dir = root / "Groundtruth" / "TrainTestLabels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    (root / "Concepts81.txt").write_text("".join(f"{c}\n" for c in NUSWIDE_CLASSES))
    for k, rel in enumerate(NUSWIDE_IMAGES):
        posix = rel.replace("\\", "/")
        if NUSWIDE_IMAGES[rel][0] not in parts:
            continue
        if not (missing and posix in NUSWIDE_MISSING):
            _jpeg(root / "Flickr" / posix, k, corrupt=corrupt and posix == NUSWIDE_CORRUPT)
    for list_name, suffix, split in (("TrainImagelist.txt", "Train", "trainval"), ("TestImagelist.txt", "Test", "test")):
        if split not in parts:
            continue
        rels = [r for r, (s, _) in NUSWIDE_IMAGES.items() if s == split]
        with open(root / "ImageList" / list_name, "w", newline="") as f:  # Windows line ends, as distributed
            f.write("".join(f"{r}\r\n" for r in rels))
        for concept in NUSWIDE_CLASSES:
            (labels_dir / f"Labels_{concept}_{suffix}.txt").write_text(
                "".join(f"{int(concept in NUSWIDE_IMAGES[r][1])}\n" for r in rels))
    return root
