"""PASCAL VOC 2007 as the official release lays it out (``VOCtrainval_06-Nov-2007.tar`` and
``VOCtest_06-Nov-2007.tar`` extracted into the same folder, which merges them into one ``VOC2007/``).

Expected files (``root`` may be the folder holding ``VOCdevkit/``, ``VOCdevkit/`` itself, or ``VOC2007/``)::

    VOCdevkit/VOC2007/JPEGImages/<id>.jpg                    the images (ids are 6-digit strings: 000005)
    VOCdevkit/VOC2007/ImageSets/Main/trainval.txt            one id per line  -> split "trainval" (5011)
    VOCdevkit/VOC2007/ImageSets/Main/test.txt                one id per line  -> split "test"     (4952)
    VOCdevkit/VOC2007/ImageSets/Main/<class>_trainval.txt    "<id> <flag>", flag 1 present, -1 absent,
    VOCdevkit/VOC2007/ImageSets/Main/<class>_test.txt        0 only "difficult" instances
    VOCdevkit/VOC2007/Annotations/<id>.xml                   used only when a per-class file is missing

Labels come from the 20 per-class files of a split when they are all present, otherwise from the XML
annotations of that split (``<object><name>`` and ``<difficult>``; a class whose objects are all
difficult is the per-class flag 0). Flag 0 becomes IGNORE with ``difficult="ignore"`` (the official
VOC protocol: such images count neither as positives nor as negatives) or 0 with
``difficult="negative"`` (what the multi-label papers' reference code does).

Images listed but missing from ``JPEGImages/`` are reported once (one printed line) and skipped.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from mlr_core.data.labels import IGNORE
from mlr_core.data.manifest import SPLITS, DatasetError, LabelledImages
from mlr_core.data.release import check_splits, missing_mask, missing_part, report_missing, require_splits

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
DIFFICULT_POLICIES = ("ignore", "negative")

_LAYOUT = ("VOCdevkit/VOC2007/{JPEGImages/<id>.jpg, Annotations/<id>.xml, "
           "ImageSets/Main/{trainval,test}.txt, ImageSets/Main/<class>_{trainval,test}.txt}")


def find_voc2007(root: str | Path) -> Path:
    """The ``VOC2007/`` folder under ``root`` (which may be its parent's parent, its parent or itself)."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: VOC2007 root not found (expected the folder holding {_LAYOUT})")
    for cand in (root / "VOCdevkit" / "VOC2007", root / "VOC2007", root):
        if (cand / "ImageSets" / "Main").is_dir():
            return cand
    raise DatasetError(f"{root}: not a VOC2007 folder; expected {_LAYOUT} under it "
                       f"(root may also be VOCdevkit/ or VOC2007/ itself)")


_ARCHIVES = {"trainval": "VOCtrainval_06-Nov-2007.tar", "test": "VOCtest_06-Nov-2007.tar"}


def _read_ids(path: Path, split: str) -> list[str]:
    if not path.is_file():
        raise missing_part("voc2007", split, path, f" (it is in {_ARCHIVES[split]}: extract it into the same folder)")
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1:
            raise DatasetError(f"{path}:{n}: expected one image id per line, got {line.strip()!r}")
        ids.append(parts[0])
    return ids


def _read_class_file(path: Path, ids: list[str]) -> dict[str, int]:
    """``<id> <flag>`` lines -> {id: flag}; the ids must be exactly those of the split's list."""
    flags: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("1", "-1", "0"):
            raise DatasetError(f"{path}:{n}: expected '<id> <flag>' with flag 1, -1 or 0, got {line.strip()!r}")
        flags[parts[0]] = int(parts[1])
    wanted = set(ids)
    extra = [i for i in flags if i not in wanted]
    if extra:
        raise DatasetError(f"{path}: id {extra[0]} is not in the split's image list ({len(extra)} such ids)")
    absent = [i for i in ids if i not in flags]
    if absent:
        raise DatasetError(f"{path}: no line for image {absent[0]} of the split's image list ({len(absent)} missing)")
    return flags


def _read_xml_flags(path: Path) -> np.ndarray:
    """Per-class flags (1 / -1 / 0 only difficult) from one annotation file."""
    if not path.is_file():
        raise DatasetError(f"{path}: annotation not found (and the per-class ImageSets files are incomplete)")
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        raise DatasetError(f"{path}: not valid XML ({e})") from None
    present = np.zeros(len(VOC_CLASSES), bool)
    difficult_only = np.zeros(len(VOC_CLASSES), bool)
    index = {c: i for i, c in enumerate(VOC_CLASSES)}
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in index:
            raise DatasetError(f"{path}: object name {name!r} is not a VOC2007 class")
        diff = (obj.findtext("difficult") or "0").strip()
        if diff not in ("0", "1"):
            raise DatasetError(f"{path}: <difficult> of a {name!r} object is {diff!r}, expected 0 or 1")
        if diff == "1":
            difficult_only[index[name]] = True
        else:
            present[index[name]] = True
    flags = np.full(len(VOC_CLASSES), -1, np.int8)
    flags[difficult_only] = 0
    flags[present] = 1
    return flags


def read_voc2007(root: str | Path, difficult: str, splits=SPLITS) -> LabelledImages:
    """PASCAL VOC 2007 (the parts ``splits``: trainval, test or both) with the 20 classes in the official order
    (see module docstring)."""
    if difficult not in DIFFICULT_POLICIES:
        raise ValueError(f"dataset.voc_difficult must be one of {list(DIFFICULT_POLICIES)}, got {difficult!r}")
    splits = check_splits(splits)
    voc = find_voc2007(root)
    main = voc / "ImageSets" / "Main"
    jpeg_dir = voc / "JPEGImages"
    zero = IGNORE if difficult == "ignore" else 0

    # the lists of every part present are read (they are small) so that an image listed in two parts is
    # caught even when only one is loaded
    listed = {split: _read_ids(main / f"{split}.txt", split) for split in SPLITS
              if split in splits or (main / f"{split}.txt").is_file()}
    seen: dict[str, str] = {}
    for split, ids in listed.items():
        for i in ids:
            if i in seen:
                where = "twice in" if seen[i] == split else f"in both {seen[i]}.txt and"
                raise DatasetError(f"{main / f'{split}.txt'}: image {i} is listed {where} {split}.txt")
            seen[i] = split
    listed = {split: ids for split, ids in listed.items() if split in splits}

    gone = {split: missing_mask(jpeg_dir / f"{i}.jpg" for i in ids) for split, ids in listed.items()}
    report_missing("voc2007", sorted(f"{i}.jpg" for split, ids in listed.items() for i, g in zip(ids, gone[split]) if g),
                   sum(map(len, listed.values())), jpeg_dir)

    paths, image_ids, found, rows = [], [], [], []
    for split, ids in listed.items():
        keep = [i for i, g in zip(ids, gone[split]) if not g]
        class_files = [main / f"{c}_{split}.txt" for c in VOC_CLASSES]
        if all(f.is_file() for f in class_files):
            flags = np.empty((len(keep), len(VOC_CLASSES)), np.int8)
            for c, f in enumerate(class_files):
                per_id = _read_class_file(f, ids)
                flags[:, c] = [per_id[i] for i in keep]
        else:
            ann = voc / "Annotations"
            flags = np.stack([_read_xml_flags(ann / f"{i}.xml") for i in keep]) if keep \
                else np.empty((0, len(VOC_CLASSES)), np.int8)
        target = np.where(flags == 1, 1, np.where(flags == 0, zero, 0)).astype(np.int8)
        paths += [jpeg_dir / f"{i}.jpg" for i in keep]
        image_ids += keep
        found += [split] * len(keep)
        rows.append(target)
    require_splits("voc2007", found, jpeg_dir, wanted=list(listed))
    return LabelledImages(list(VOC_CLASSES), paths, image_ids, found, np.concatenate(rows))
