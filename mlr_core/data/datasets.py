"""One entry point for every labelled benchmark: :func:`load_dataset` -> :class:`LabelledImages`.

``dataset.name`` picks the reader; ``dataset.root`` is the folder the user extracted the official
release into (see each reader's module docstring for the exact files it expects):

* ``tinyworld`` / ``manifest``: the generic format (:mod:`mlr_core.data.manifest`),
  ``root/<manifest>`` and ``root/<classes>``;
* ``voc2007``: :func:`mlr_core.data.voc.read_voc2007`;
* ``coco2014``: :func:`mlr_core.data.coco.read_coco2014`;
* ``nuswide``: :func:`mlr_core.data.nuswide.read_nuswide`.

``splits`` says which parts to read: a folder holding only the test part of a release (enough for
zero-shot evaluation) loads with ``splits=("test",)``, and a stage that needs a part that is not there
says so in one line naming the missing files.

The small helpers below (file-existence checks by directory listing, the one-line report of missing
images) are shared by the readers. The readers are imported lazily so that they may import them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from mlr_core.data.manifest import SPLITS, DatasetError, LabelledImages, read_classes, read_manifest

DATASET_NAMES: tuple[str, ...] = ("tinyworld", "manifest", "voc2007", "coco2014", "nuswide")

#: How many missing file names the one-line report shows.
REPORT_FIRST = 5


def dataset_info(dataset_params) -> dict:
    """What identifies the labelled data: name, root and the label choices that change the numbers (recorded
    in the feature cache and, from it, in every metrics file)."""
    info = {"name": dataset_params.name, "root": dataset_params.root}
    if dataset_params.name == "voc2007":
        info["voc_difficult"] = dataset_params.voc_difficult
    if dataset_params.name == "coco2014":
        info["coco_unannotated"] = dataset_params.coco_unannotated
    return info


def check_splits(splits) -> tuple[str, ...]:
    splits = tuple(splits)
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ValueError(f"splits must be a non-empty subset of {list(SPLITS)}, got {list(splits)}")
    return splits


def missing_part(dataset: str, split: str, what: Path | str, hint: str = "") -> DatasetError:
    """The one-line error of a stage that needs a part of the release that is not on disk."""
    need = ("the image-supervised methods (DualCoOp, PVLR, CoOp) and the label budgets need it; zero-shot "
            "evaluation does not (features.splits: [test], then `dvc repro evaluate_zsclip`)"
            if split == "trainval" else "every evaluation needs it")
    return DatasetError(f"{dataset}: the {split} part is not there ({what} not found){hint}; {need}")


def missing_mask(paths: Iterable[Path]) -> list[bool]:
    """For each path, whether it is not a file; found with one ``os.scandir`` per parent folder.

    Much faster than one ``stat`` per image on the 100k-300k image benchmarks (and on network disks).
    """
    listed: dict[Path, set[str]] = {}
    missing = []
    for p in paths:
        parent = p.parent
        names = listed.get(parent)
        if names is None:
            try:
                with os.scandir(parent) as it:
                    names = {e.name for e in it if e.is_file()}
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                names = set()
            listed[parent] = names
        missing.append(p.name not in names)
    return missing


def report_missing(dataset: str, missing: list[str], total: int, where: Path | str) -> None:
    """Print ONE line: how many listed images are missing on disk (and the first few names)."""
    if not missing:
        return
    first = ", ".join(missing[:REPORT_FIRST]) + (", ..." if len(missing) > REPORT_FIRST else "")
    print(f"{dataset}: {len(missing)} of {total} listed images are missing under {where}; "
          f"skipped them (first: {first})")


def require_splits(dataset: str, found: list[str], where: Path | str, wanted=SPLITS) -> None:
    """A wanted split with no image left (e.g. its image folder was never extracted) is an error, not a
    silent gap."""
    for split in wanted:
        if split not in found:
            raise DatasetError(f"{dataset}: no image of split {split!r} found on disk under {where}; "
                               f"was that part of the release extracted there?")


def assemble_splits(dataset: str, classes: list[str], parts: list[tuple], where: Path | str) -> LabelledImages:
    """Join a release's per-split lists into one :class:`LabelledImages`, skipping the listed images that are not
    on disk (reported in one line) and failing if a split is left empty.

    ``parts``: one ``(paths, image_ids, names, targets, split)`` per list, ``names`` being how the report shows
    each image (relative to ``where``) and ``targets`` an (N, C) array."""
    gone = [missing_mask(paths) for paths, *_ in parts]
    report_missing(dataset, sorted(n for (_, _, names, _, _), g in zip(parts, gone) for n, m in zip(names, g) if m),
                   sum(len(paths) for paths, *_ in parts), where)
    paths, image_ids, splits, rows = [], [], [], []
    for (fp, ids, _, targets, split), g in zip(parts, gone):
        keep = [k for k, m in enumerate(g) if not m]
        paths += [fp[k] for k in keep]
        image_ids += [ids[k] for k in keep]
        splits += [split] * len(keep)
        rows.append(targets[keep])
    require_splits(dataset, splits, where, wanted=[p[4] for p in parts])
    return LabelledImages(list(classes), paths, image_ids, splits, np.concatenate(rows))


def load_dataset(name: str, root: str | Path, *, manifest: str, classes: str, voc_difficult: str,
                 coco_unannotated: str, splits=SPLITS) -> LabelledImages:
    """Read the parts ``splits`` of benchmark ``name`` from ``root`` (the params' ``dataset`` section, field by
    field)."""
    root, splits = Path(root), check_splits(splits)
    if name in ("tinyworld", "manifest"):
        data = read_manifest(root / manifest, root / classes)
        for split in splits:
            if split not in data.splits:
                raise missing_part(name, split, f"a row of split {split} in {root / manifest}")
        return data.select(i for i, s in enumerate(data.splits) if s in splits)
    if name == "voc2007":
        from mlr_core.data.voc import read_voc2007
        return read_voc2007(root, difficult=voc_difficult, splits=splits)
    if name == "coco2014":
        from mlr_core.data.coco import read_coco2014
        return read_coco2014(root, unannotated=coco_unannotated, splits=splits)
    if name == "nuswide":
        from mlr_core.data.nuswide import read_nuswide
        return read_nuswide(root, splits=splits)
    raise ValueError(f"dataset.name: unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")


def load_from_params(dataset, splits=SPLITS) -> LabelledImages:
    """:func:`load_dataset` with the fields of the params' ``dataset`` section."""
    return load_dataset(dataset.name, dataset.root, manifest=dataset.manifest, classes=dataset.classes,
                        voc_difficult=dataset.voc_difficult, coco_unannotated=dataset.coco_unannotated, splits=splits)


def dataset_classes(name: str, root: str | Path, *, classes: str) -> list[str]:
    """The class names of benchmark ``name`` in label order, reading no image list."""
    root = Path(root)
    if name in ("tinyworld", "manifest"):
        return read_classes(root / classes)
    if name == "voc2007":
        from mlr_core.data.voc import VOC_CLASSES
        return list(VOC_CLASSES)
    if name == "coco2014":
        from mlr_core.data.coco import COCO_CLASSES
        return list(COCO_CLASSES)
    if name == "nuswide":
        return read_classes(root / "Concepts81.txt")
    raise ValueError(f"dataset.name: unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
