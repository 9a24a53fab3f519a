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

The helpers the readers share (split checks, file-existence checks by directory listing, the one-line
report of missing images) live in :mod:`mlr_core.data.release`.
"""
from __future__ import annotations

from pathlib import Path

from mlr_core.data.coco import COCO_CLASSES, read_coco2014
from mlr_core.data.manifest import SPLITS, LabelledImages, read_classes, read_manifest
from mlr_core.data.nuswide import NUSWIDE_CLASSES, read_nuswide
from mlr_core.data.release import check_splits, missing_part
from mlr_core.data.tinyworld import CLASSES as TINYWORLD_CLASSES
from mlr_core.data.voc import VOC_CLASSES, read_voc2007

DATASET_NAMES: tuple[str, ...] = ("tinyworld", "manifest", "voc2007", "coco2014", "nuswide")


def dataset_info(dataset_params) -> dict:
    """What identifies the labelled data: name, root and the label choices that change the numbers (recorded
    in the feature cache and, from it, in every metrics file)."""
    info = {"name": dataset_params.name, "root": dataset_params.root}
    if dataset_params.name == "voc2007":
        info["voc_difficult"] = dataset_params.voc_difficult
    if dataset_params.name == "coco2014":
        info["coco_unannotated"] = dataset_params.coco_unannotated
    return info


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
        return read_voc2007(root, difficult=voc_difficult, splits=splits)
    if name == "coco2014":
        return read_coco2014(root, unannotated=coco_unannotated, splits=splits)
    if name == "nuswide":
        return read_nuswide(root, splits=splits)
    raise ValueError(f"dataset.name: unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")


def load_from_params(dataset, splits=SPLITS) -> LabelledImages:
    """:func:`load_dataset` with the fields of the params' ``dataset`` section."""
    return load_dataset(dataset.name, dataset.root, manifest=dataset.manifest, classes=dataset.classes,
                        voc_difficult=dataset.voc_difficult, coco_unannotated=dataset.coco_unannotated, splits=splits)


def builtin_classes(name: str) -> tuple[str, ...]:
    """The class list (label order) the project ships for a named benchmark (tinyworld, voc2007, coco2014,
    nuswide): what the synonym tables are keyed by. A release's own files stay the authority when reading it."""
    known = {"tinyworld": TINYWORLD_CLASSES, "voc2007": VOC_CLASSES, "coco2014": COCO_CLASSES,
             "nuswide": NUSWIDE_CLASSES}
    if name not in known:
        raise ValueError(f"unknown dataset {name!r}: pass its class list explicitly (built in: {', '.join(known)})")
    return tuple(known[name])


def dataset_classes(name: str, root: str | Path, *, classes: str) -> list[str]:
    """The class names of benchmark ``name`` in label order, reading no image list."""
    root = Path(root)
    if name in ("tinyworld", "manifest"):
        return read_classes(root / classes)
    if name in ("voc2007", "coco2014"):
        return list(builtin_classes(name))
    if name == "nuswide":
        return read_classes(root / "Concepts81.txt")
    raise ValueError(f"dataset.name: unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
