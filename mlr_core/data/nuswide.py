r"""NUS-WIDE, the 81-concept setting, from the commonly distributed files.

Expected files under ``root``::

    Concepts81.txt                                        the 81 concept names, one per line: the class order
    ImageList/TrainImagelist.txt                          one relative image path per line -> split "trainval"
    ImageList/TestImagelist.txt                           (161,789 and 107,859 lines)      -> split "test"
    Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt  one 0/1 per line, aligned with TrainImagelist.txt
    Groundtruth/TrainTestLabels/Labels_<concept>_Test.txt   one 0/1 per line, aligned with TestImagelist.txt
    Flickr/<folder>/<file>.jpg                            the images

The image lists use Windows separators (``actor\0001_2124494179.jpg``); they are resolved under
``root/Flickr/`` with ``/``. A path written absolute (``C:\ImageData\Flickr\actor\...``, as in the full
``Imagelist.txt``) is cut after its ``Flickr\`` part. ``image_ids`` are the relative paths with ``/``
(``actor/0001_2124494179.jpg``). Lines may end in CRLF; blank lines are ignored.

NUS-WIDE images were downloaded from Flickr and every copy in circulation lacks some of them: images
listed but missing on disk are reported once (one printed line with the count and the first few names)
and skipped. Images with no positive concept (about a fifth of them) are kept, as all-negative rows;
drop them with ``data.select(np.flatnonzero((data.targets == 1).any(1)))`` if a protocol wants that.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mlr_core.data.manifest import SPLITS, DatasetError, LabelledImages, read_classes
from mlr_core.data.release import assemble_splits, check_splits, missing_part

#: The 81 concepts as the commonly distributed ``Concepts81.txt`` names them, in its (alphabetical) order.
NUSWIDE_CLASSES: tuple[str, ...] = (
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars", "castle", "cat",
    "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog", "earthquake", "elk", "fire", "fish", "flags",
    "flowers", "food", "fox", "frost", "garden", "glacier", "grass", "harbor", "horses", "house", "lake", "leaf", "map",
    "military", "moon", "mountain", "nighttime", "ocean", "person", "plane", "plants", "police", "protest",
    "railroad", "rainbow", "reflection", "road", "rocks", "running", "sand", "sign", "sky", "snow", "soccer",
    "sports", "statue", "street", "sun", "sunset", "surf", "swimmers", "tattoo", "temple", "tiger", "tower", "town",
    "toy", "train", "tree", "valley", "vehicle", "water", "waterfall", "wedding", "whales", "window", "zebra",
)

#: (image list, label file suffix, split)
_PARTS = (("TrainImagelist.txt", "Train", "trainval"), ("TestImagelist.txt", "Test", "test"))


def _lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines."""
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(n, s) for n, line in enumerate(text.splitlines(), 1) if (s := line.strip())]


def _relative(entry: str) -> str:
    rel = entry.replace("\\", "/")
    if (rel.startswith("/") or rel[1:2] == ":") and "Flickr/" in rel:
        rel = rel.rsplit("Flickr/", 1)[1]
    return rel.lstrip("/")


def _read_labels(path: Path, n_images: int, image_list: Path) -> np.ndarray:
    """One 0/1 per line -> bool column (the fast path matters: 162 files of up to 161,789 lines)."""
    if not path.is_file():
        raise DatasetError(f"{path}: label file not found")
    values = [s for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if (s := line.strip())]
    if len(values) != n_images:
        raise DatasetError(f"{path}: {len(values)} labels but {image_list.name} lists {n_images} images "
                           f"(the files must be aligned line by line)")
    if not set(values) <= {"0", "1"}:
        n, s = next((n, s) for n, s in _lines(path, "label file") if s not in ("0", "1"))
        raise DatasetError(f"{path}:{n}: expected 0 or 1, got {s!r}")
    return np.asarray(values) == "1"


def read_nuswide(root: str | Path, splits=SPLITS) -> LabelledImages:
    """NUS-WIDE 81 concepts (the parts ``splits``): TrainImagelist -> "trainval", TestImagelist -> "test" (see
    module docstring)."""
    splits = check_splits(splits)
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: NUS-WIDE root not found (expected Concepts81.txt, ImageList/, "
                           f"Groundtruth/TrainTestLabels/ and Flickr/ under it)")
    classes = read_classes(root / "Concepts81.txt")
    flickr = root / "Flickr"
    parts = []
    for list_name, suffix, split in _PARTS:
        if split not in splits:
            continue
        list_path = root / "ImageList" / list_name
        if not list_path.is_file():
            raise missing_part("nuswide", split, list_path)
        rel = [_relative(s) for _, s in _lines(list_path, "image list")]
        targets = np.zeros((len(rel), len(classes)), np.int8)
        for c, concept in enumerate(classes):
            label_path = root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{suffix}.txt"
            targets[:, c] = _read_labels(label_path, len(rel), list_path)
        parts.append((rel, targets, split))

    return assemble_splits("nuswide", classes, [([flickr / r for r in rel], rel, rel, targets, split)
                                                for rel, targets, split in parts], flickr)
