"""One entry point for every labelled benchmark: :func:`load_dataset` -> :class:`LabelledImages`.

``dataset.name`` picks the reader; ``dataset.root`` is the folder the user extracted the official
release into (see each reader's module docstring for the exact files it expects):

* ``tinyworld`` / ``manifest``: the generic format (:mod:`mlr_core.data.manifest`),
  ``root/<manifest>`` and ``root/<classes>``;
* ``voc2007``: :func:`mlr_core.data.voc.read_voc2007`;
* ``coco2014``: :func:`mlr_core.data.coco.read_coco2014`;
* ``nuswide``: :func:`mlr_core.data.nuswide.read_nuswide`.

The small helpers below (file-existence checks by directory listing, the one-line report of missing
images) are shared by the readers. The readers are imported lazily so that they may import them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from mlr_core.data.manifest import DatasetError, LabelledImages, read_manifest

DATASET_NAMES: tuple[str, ...] = ("tinyworld", "manifest", "voc2007", "coco2014", "nuswide")

#: How many missing file names the one-line report shows.
REPORT_FIRST = 5


def label_policy(dataset_params) -> dict:
    """The label choices that change the numbers (recorded in the feature cache and in every metrics file)."""
    if dataset_params.name == "voc2007":
        return {"voc_difficult": dataset_params.voc_difficult}
    if dataset_params.name == "coco2014":
        return {"coco_unannotated": dataset_params.coco_unannotated}
    return {}


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


def require_splits(dataset: str, splits: list[str], where: Path | str) -> None:
    """A split with no image left (e.g. its image folder was never extracted) is an error, not a silent gap."""
    for split in ("trainval", "test"):
        if split not in splits:
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
    require_splits(dataset, splits, where)
    return LabelledImages(list(classes), paths, image_ids, splits, np.concatenate(rows))


def load_dataset(name: str, root: str | Path, *, manifest: str = "manifest.csv", classes: str = "classes.txt",
                 voc_difficult: str = "ignore", coco_unannotated: str = "drop") -> LabelledImages:
    """Read the benchmark ``name`` from ``root`` (the params' ``dataset`` section, field by field)."""
    root = Path(root)
    if name in ("tinyworld", "manifest"):
        return read_manifest(root / manifest, root / classes)
    if name == "voc2007":
        from mlr_core.data.voc import read_voc2007
        return read_voc2007(root, difficult=voc_difficult)
    if name == "coco2014":
        from mlr_core.data.coco import read_coco2014
        return read_coco2014(root, unannotated=coco_unannotated)
    if name == "nuswide":
        from mlr_core.data.nuswide import read_nuswide
        return read_nuswide(root)
    raise ValueError(f"dataset.name: unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
