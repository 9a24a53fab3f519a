"""The generic dataset format: every benchmark becomes one :class:`LabelledImages`.

On disk (tinyworld writes it; users write it for their own data):

* a class list file, one class name per line, in label order;
* a manifest, CSV with a header or JSONL, with the fields ``image`` (path relative to the manifest's
  folder, or absolute), ``split`` (``trainval`` or ``test``) and ``labels``: the positive class names,
  separated by ``;`` in CSV or a list in JSONL. Partial labels: a name prefixed with ``?`` is unknown
  (ignored by the metrics and losses), one prefixed with ``-`` is an explicit negative, and the entry
  ``?*`` makes every class the row does not name unknown instead of negative. Without ``?*``, classes
  not named are negatives.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlr_core.data.labels import IGNORE
from mlr_core.io import atomic_write_text

SPLITS = ("trainval", "test")
#: What a folder of images is read as (a user's photos: ``mlr_core.predict``, :func:`write_unlabelled_manifest`).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: The file names of a generic-format folder that other stages write (the synthetic images).
MANIFEST_FILE, CLASSES_FILE = "manifest.csv", "classes.txt"


class DatasetError(ValueError):
    """A dataset file is malformed; the message names the file, line and field."""


@dataclass
class LabelledImages:
    """Images with multi-label targets (1 positive, 0 negative, IGNORE unknown), in manifest order."""

    classes: list[str]
    paths: list[Path]
    image_ids: list[str]  # stable ids: the manifest's image field
    splits: list[str]
    targets: np.ndarray  # (N, C) int8

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices) -> "LabelledImages":
        keep = list(indices)
        return LabelledImages(self.classes, [self.paths[i] for i in keep], [self.image_ids[i] for i in keep],
                              [self.splits[i] for i in keep], self.targets[keep])

    def subset(self, split: str) -> "LabelledImages":
        return self.select(i for i, s in enumerate(self.splits) if s == split)


def read_classes(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: class list not found")
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not classes:
        raise DatasetError(f"{path}: class list is empty")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise DatasetError(f"{path}: duplicate class names {dup}")
    return classes


def manifest_rows(path: Path):
    """(line number, image, split, [label names]) for CSV or JSONL manifests."""
    if path.suffix == ".jsonl":
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{path}:{n}: not valid JSON ({e.msg})") from None
                labels = row.get("labels", [])
                if not isinstance(labels, list):
                    raise DatasetError(f"{path}:{n}: field 'labels' must be a list of class names")
                yield n, row.get("image"), row.get("split"), labels
    else:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"image", "split", "labels"} - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(f"{path}: header must have fields image, split, labels; missing {sorted(missing)}")
            for n, row in enumerate(reader, 2):
                labels = [s.strip() for s in (row["labels"] or "").split(";") if s.strip()]
                yield n, row["image"], row["split"], labels


def read_manifest(manifest: str | Path, classes: str | Path | list[str], check_files: bool = True) -> LabelledImages:
    """Read and validate a manifest; unknown classes, bad splits and missing images name the line. ``classes``: the
    class list file, or the names themselves (a classifier's)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest not found")
    names = list(classes) if isinstance(classes, list) else read_classes(classes)
    where = "the classifier's classes" if isinstance(classes, list) else Path(classes).name
    index = {c: i for i, c in enumerate(names)}
    paths, ids, splits, rows = [], [], [], []
    for n, image, split, labels in manifest_rows(manifest):
        if not image:
            raise DatasetError(f"{manifest}:{n}: field 'image' is empty")
        if split not in SPLITS:
            raise DatasetError(f"{manifest}:{n}: field 'split' is {split!r}, expected one of {list(SPLITS)}")
        target = np.full(len(names), IGNORE if "?*" in labels else 0, dtype=np.int8)
        for label in labels:
            if label == "?*":
                continue
            value = {"?": IGNORE, "-": 0}.get(label[0], 1)
            name = label[1:] if value != 1 else label
            if name not in index:
                raise DatasetError(f"{manifest}:{n}: unknown class {name!r} (not in {where})")
            target[index[name]] = value
        if not Path(image).is_absolute() and os.path.normpath(image).split(os.sep)[0] == os.pardir:
            # a relative path names a file under the manifest's folder; one outside it is written absolute
            raise DatasetError(f"{manifest}:{n}: field 'image' is {image!r}, which leaves the dataset folder "
                               f"{manifest.parent}; write the path relative to that folder, or absolute")
        path = Path(image) if Path(image).is_absolute() else manifest.parent / image
        if check_files and not path.is_file():
            raise DatasetError(f"{manifest}:{n}: image file not found: {path}")
        paths.append(path)
        ids.append(str(image))
        splits.append(split)
        rows.append(target)
    if not rows:
        raise DatasetError(f"{manifest}: no rows")
    return LabelledImages(names, paths, ids, splits, np.stack(rows))


def read_manifest_folder(root: str | Path) -> LabelledImages:
    """A generic-format folder written with the conventional names (``manifest.csv``, ``classes.txt``)."""
    root = Path(root)
    return read_manifest(root / MANIFEST_FILE, root / CLASSES_FILE)


def manifest_labels(target: np.ndarray, classes: list[str]) -> str:
    """A target row as the manifest writes it: the positive names, then ``?name`` for each unknown."""
    return ";".join([c for c, v in zip(classes, target) if v == 1] +
                    [f"?{c}" for c, v in zip(classes, target) if v == IGNORE])


def write_manifest_folder(root: str | Path, images: list[str], splits: list[str], targets: np.ndarray,
                          classes: list[str]) -> None:
    """Write ``root/manifest.csv`` and ``root/classes.txt`` (the images are the caller's), each atomically;
    :func:`read_manifest_folder` reads them back.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> write_manifest_folder(root, ["a.png"], ["test"], np.array([[1, 0, -1]]), ["cat", "dog", "fox"])
        >>> print((root / "manifest.csv").read_text(), end="")
        image,split,labels
        a.png,test,cat;?fox
    """
    root = Path(root)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "split", "labels"])
    writer.writerows([image, split, manifest_labels(row, classes)] for image, split, row in zip(images, splits, targets))
    atomic_write_text(root / MANIFEST_FILE, buf.getvalue())
    atomic_write_text(root / CLASSES_FILE, "\n".join(classes) + "\n")


def image_files_under(folder: str | Path) -> list[str]:
    """The image files under ``folder`` (recursively, by :data:`IMAGE_EXTENSIONS`), as sorted POSIX paths
    relative to it."""
    folder = Path(folder)
    return sorted(f.relative_to(folder).as_posix() for f in folder.rglob("*")
                  if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)


def write_unlabelled_manifest(root: str | Path, images_dir: str | Path, split: str = "test") -> Path:
    """``root/manifest.csv`` for the image files under ``images_dir`` (a folder inside ``root``), every label
    unknown (``?*``): a user's own photos as a split of the generic format, for methods that need no labelled
    image (zero-shot, text-trained) and for ``mlr_core.predict``. ``root/classes.txt`` is the user's.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "photos").mkdir()
        >>> _ = (root / "photos" / "a.jpg").write_bytes(b"")
        >>> print(write_unlabelled_manifest(root, root / "photos").read_text(), end="")
        image,split,labels
        photos/a.jpg,test,?*
    """
    if split not in SPLITS:
        raise DatasetError(f"split {split!r}: expected one of {list(SPLITS)}")
    root, images_dir = Path(root), Path(images_dir)
    try:
        relative = images_dir.resolve().relative_to(root.resolve())
    except ValueError:
        raise DatasetError(f"{images_dir}: the images must lie inside the dataset folder {root}") from None
    ids = image_files_under(images_dir)
    if not ids:
        raise DatasetError(f"{images_dir}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "split", "labels"])
    writer.writerows([(relative / i).as_posix(), split, "?*"] for i in ids)
    atomic_write_text(root / MANIFEST_FILE, buf.getvalue())
    return root / MANIFEST_FILE


def main(argv: list[str] | None = None) -> int:
    """``python -m mlr_core.data.manifest unlabelled ROOT IMAGES_DIR [--split test]``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m mlr_core.data.manifest",
                                 description="write a generic-format manifest for a folder of unlabelled images")
    sub = ap.add_subparsers(dest="command", required=True)
    un = sub.add_parser("unlabelled", help="ROOT/manifest.csv for the images under IMAGES_DIR, every label unknown")
    un.add_argument("root", help="the dataset folder (holds classes.txt; the manifest is written here)")
    un.add_argument("images", help="the folder of images, inside ROOT")
    un.add_argument("--split", default="test", choices=SPLITS)
    a = ap.parse_args(argv)
    try:
        path = write_unlabelled_manifest(a.root, a.images, a.split)
    except (DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{path}: {len(path.read_text().splitlines()) - 1} images, split {a.split}, every label unknown")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
