"""What the readers of the official releases share: which parts (splits) to read, the one-line errors and
reports about parts or images that are not on disk, and the join of per-split lists into one
:class:`~mlr_core.data.manifest.LabelledImages`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from mlr_core.data.manifest import SPLITS, DatasetError, LabelledImages

#: How many missing file names the one-line report shows.
REPORT_FIRST = 5


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
