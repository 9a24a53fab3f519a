"""Label budgets: the seeded, versioned subsets of the trainval labels that image-supervised methods learn from.

Written once by the ``budgets`` stage (DVC-tracked ``data/budgets/``) so every method that uses "10% labels"
uses the same mask:

* ``val``: a held-out validation part of trainval (``val_fraction``, ``val_seed``), full labels. It is
  carved first; every budget below is drawn from the rest (``train``). Methods log on it; nothing is ever
  selected on the test split.
* ``full``: the train part with all its labels.
* ``partial<pct>_s<seed>``: partial labels keeping a proportion ``p`` of the known labels **of each class**
  (exactly ``round(p * n_known_c)`` per class column), the rest set to -1 (unknown). The reference draws
  its mask without a seed (a pitfall); here one permutation per (seed, class) decides the order in which
  labels are kept, so the masks of one seed are nested (the 10% mask is inside the 20% mask).
* ``shot<k>_s<seed>``: a K-shot subset as in the few-shot MLR literature (LaSO; used by TaI-DPT): classes
  are visited in a seeded random order and, for each, images containing it are added (seeded order) until
  the selected set holds at least ``k`` positives of that class; selected images keep all their labels.
  A class with fewer than ``k`` positives contributes all of them (recorded in the index).
* ``zsl-<split>``: a zero-shot seen/unseen split: the train part with only the seen classes' labels known
  (unseen and excluded classes -1). Named built-in splits (``coco_48_17``, Bansal et al. 2018, used by
  DualCoOp) or any split given as a class list.

A run name is ``<budget>_s<seed>`` (e.g. ``partial10_s0``, ``shot4_s1``, ``full_s2``, ``zsl-coco_48_17_s0``)
and names its label file ``<run>.parquet``; the seed seeds the draw (partial, shot) and the training. The
``full`` and ``zsl`` label sets do not depend on the seed and are written once per seed under the run's
name, so a DVC stage depends on exactly its own file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mlr_core.data.labels import IGNORE
from mlr_core.io import atomic_dir, atomic_path
from mlr_core.runs import BudgetError, parse_run
from mlr_core.views import base_image_id

# Bansal et al. (ECCV 2018) zero-shot split of MS-COCO: 48 seen / 17 unseen classes (the other 15 are unused).
COCO_48_17_UNSEEN = ("airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard",
                     "skateboard", "cup", "knife", "cake", "couch", "keyboard", "sink", "scissors")
COCO_48_17_SEEN = ("person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse",
                   "sheep", "bear", "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis", "kite",
                   "surfboard", "bottle", "fork", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
                   "broccoli", "carrot", "pizza", "donut", "chair", "bed", "toilet", "tv", "laptop", "mouse",
                   "remote", "microwave", "oven", "toaster", "refrigerator", "book", "clock", "vase", "toothbrush")
NAMED_SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {"coco_48_17": (COCO_48_17_SEEN, COCO_48_17_UNSEEN)}


# ------------------------------------------------------------------------------------------------------
# the draws (pure functions of targets and seed)
# ------------------------------------------------------------------------------------------------------
def carve_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``n`` trainval rows into (train indices, val indices), both sorted."""
    if not 0 <= fraction < 1:
        raise BudgetError(f"val_fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng([seed, 0xA1]).permutation(n)
    n_val = int(round(fraction * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def partial_labels(targets: np.ndarray, proportion: float, seed: int) -> np.ndarray:
    """Keep ``round(proportion * n_known_c)`` known labels in every class column c, the rest -1.

    One permutation per (seed, class): masks of one seed are nested across proportions.
    """
    if not 0 < proportion <= 1:
        raise BudgetError(f"proportion must be in (0, 1], got {proportion}")
    out = np.full_like(targets, IGNORE)
    for c in range(targets.shape[1]):
        known = np.flatnonzero(targets[:, c] != IGNORE)
        order = known[np.random.default_rng([seed, 0xB2, c]).permutation(len(known))]
        keep = order[:int(round(proportion * len(known)))]
        out[keep, c] = targets[keep, c]
    return out


def k_shot_indices(targets: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Rows of a K-shot subset (at least ``k`` positives per class where available), and the classes that
    have fewer than ``k`` positives in ``targets`` (all of theirs are taken)."""
    if k < 1:
        raise BudgetError(f"shots must be >= 1, got {k}")
    rng = np.random.default_rng([seed, 0xC3])
    selected = np.zeros(len(targets), bool)
    short = []
    for c in rng.permutation(targets.shape[1]):
        pos = np.flatnonzero(targets[:, c] == 1)
        if len(pos) < k:
            short.append(int(c))
        have = int(selected[pos].sum())
        for i in pos[rng.permutation(len(pos))]:
            if have >= k:
                break
            if not selected[i]:
                selected[i] = True
                have += 1
    return np.flatnonzero(selected), sorted(short)


def resolve_split(classes: Sequence[str], name: str, unseen: Sequence[str] | None = None,
                  seen: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(seen, unseen) class names of a zero-shot split: a named one or the given lists (seen defaults to every
    other class). Every name must be a class of the dataset."""
    if unseen is None:
        if name not in NAMED_SPLITS:
            raise BudgetError(f"zero-shot split {name!r}: not a named split ({', '.join(NAMED_SPLITS)}) "
                              f"and no 'unseen' class list given")
        seen, unseen = NAMED_SPLITS[name]
    unseen = list(unseen)
    seen = [c for c in classes if c not in unseen] if seen is None else list(seen)
    missing = sorted((set(seen) | set(unseen)) - set(classes))
    if missing:
        raise BudgetError(f"zero-shot split {name!r}: classes not in the dataset: {missing[:10]}")
    if set(seen) & set(unseen):
        raise BudgetError(f"zero-shot split {name!r}: classes both seen and unseen: {sorted(set(seen) & set(unseen))}")
    if not unseen or not seen:
        raise BudgetError(f"zero-shot split {name!r}: needs at least one seen and one unseen class")
    return seen, unseen


def seen_only_labels(targets: np.ndarray, classes: Sequence[str], seen: Sequence[str]) -> np.ndarray:
    out = np.full_like(targets, IGNORE)
    cols = [list(classes).index(c) for c in seen]
    out[:, cols] = targets[:, cols]
    return out


# ------------------------------------------------------------------------------------------------------
# the artifact
# ------------------------------------------------------------------------------------------------------
def _write_labels(path: Path, image_ids: Sequence[str], labels: np.ndarray, classes: Sequence[str],
                  info: dict) -> None:
    """One budget file, self-contained: its info (sizes; a zero-shot split's seen / unseen classes) rides in the
    file's metadata, so a stage that reads one budget depends on that file alone."""
    table = pa.table({"image_id": list(image_ids),
                      "labels": pa.FixedSizeListArray.from_arrays(pa.array(labels.astype(np.int8).ravel()),
                                                                  labels.shape[1])})
    pq.write_table(table.replace_schema_metadata({b"classes": json.dumps(list(classes)).encode(),
                                                  b"info": json.dumps(info, sort_keys=True).encode()}), path)


def write_budgets(image_ids: Sequence[str], targets: np.ndarray, classes: Sequence[str], out_dir: str | Path, *,
                  val_fraction: float, val_seed: int, seeds: Sequence[int], proportions: Sequence[float],
                  shots: Sequence[int], zeroshot_splits: Sequence[dict]) -> dict:
    """Draw every budget for the trainval ``targets`` and write ``out_dir`` atomically; return the index
    (also written as ``index.json``: sizes, known-label counts and per-class positives of every budget)."""
    targets = np.asarray(targets, np.int8)
    ids = np.asarray(list(image_ids), dtype=object)
    train, val = carve_validation(len(ids), val_fraction, val_seed)
    t_train = targets[train]
    index = {"classes": list(classes), "n_trainval": len(ids), "val_fraction": val_fraction, "val_seed": val_seed,
             "budgets": {}}

    def add(d: Path, name: str, rows: np.ndarray, labels: np.ndarray, **extra) -> None:
        index["budgets"][name] = {"n_images": int(len(rows)), "n_known": int((labels != IGNORE).sum()),
                                  "positives_per_class": (labels == 1).sum(0).astype(int).tolist(), **extra}
        _write_labels(d / f"{name}.parquet", ids[rows], labels, classes, index["budgets"][name])

    with atomic_dir(out_dir) as d:
        add(d, "val", val, targets[val])
        splits = [(s["name"], *resolve_split(classes, s["name"], s.get("unseen"), s.get("seen")))
                  for s in zeroshot_splits]
        for seed in seeds:
            add(d, f"full_s{seed}", train, t_train)
            for name, seen, unseen in splits:
                add(d, f"zsl-{name}_s{seed}", train, seen_only_labels(t_train, classes, seen), seen=seen,
                    unseen=unseen)
            for p in proportions:
                add(d, f"partial{round(p * 100)}_s{seed}", train, partial_labels(t_train, p, seed), proportion=p)
            for k in shots:
                rows, short = k_shot_indices(t_train, k, seed)
                add(d, f"shot{k}_s{seed}", train[rows], t_train[rows], shots=k, classes_short_of_k=short)
        with atomic_path(d / "index.json") as tmp:
            tmp.write_text(json.dumps(index, indent=1) + "\n")
    return index


@dataclass
class Budget:
    name: str
    image_ids: list[str]
    labels: np.ndarray  # (n, C) int8, -1 unknown
    classes: list[str]
    info: dict  # the index entry (zsl: seen / unseen lists)


def load_budget(budget_dir: str | Path, name: str) -> Budget:
    """One budget by run name (``partial10_s0``, ``full_s1``, ...) or ``val``."""
    budget_dir = Path(budget_dir)
    stem = name if name == "val" else parse_run(name).budget
    path = budget_dir / f"{stem}.parquet"
    if not path.is_file():
        raise BudgetError(f"{path}: budget not found (run the budgets stage; is it in the budgets params?)")
    table = pq.read_table(path)
    classes = json.loads(table.schema.metadata[b"classes"])
    labels = table.column("labels").combine_chunks().values.to_numpy(zero_copy_only=False).reshape(len(table), -1)
    info = json.loads(table.schema.metadata[b"info"])
    return Budget(stem, table.column("image_id").to_pylist(), labels.astype(np.int8), classes, info)


def check_budget_classes(budget: Budget, cache) -> None:
    """A budget reads only a cache of its own class list (same names, same order)."""
    if list(cache.classes) != list(budget.classes):
        raise BudgetError(f"{cache.path}: cache classes differ from the budget's (re-run the budgets stage)")


def budget_features(budget: Budget, cache, columns: Sequence[str] = ("global", "dense"),
                    views: bool = False) -> dict[str, np.ndarray]:
    """The budget's rows of a trainval :class:`mlr_core.cache.FeatureCache`, in budget order, with the budget's
    labels (features in the cache's float16). ``views``: ``cache`` holds augmented views
    (:mod:`mlr_core.views`): every view of each budget image, in budget order, then view order, with the image's
    budget labels (its partial-label mask included).

    The cache is streamed and only the budget's rows are kept, so a K-shot budget of COCO never holds the whole
    dense cache in memory. Images the cache skipped (unreadable) are dropped; a class list mismatch is an error."""
    check_budget_classes(budget, cache)
    wanted = {i: j for j, i in enumerate(budget.image_ids)}
    order: list[int] = []
    parts: dict[str, list[np.ndarray]] = {c: [] for c in columns}
    for batch in cache.iter_batches(tuple(columns)):
        ids = [base_image_id(i) for i in batch.image_ids] if views else batch.image_ids
        hit = [(k, wanted[i]) for k, i in enumerate(ids) if i in wanted]
        rows = np.asarray([k for k, _ in hit], dtype=np.int64)  # may be empty: keeps the arrays' shapes
        order += [j for _, j in hit]
        for c in columns:
            parts[c].append((batch.global_ if c == "global" else batch.dense)[rows])
    if budget.image_ids and not order:
        raise BudgetError(f"{cache.path}: none of the {len(budget.image_ids)} budget images are in the cache "
                          f"(features of the trainval split needed)")
    bj = np.asarray(order, dtype=np.int64)
    perm = np.argsort(bj, kind="stable")  # back to budget order
    out = {"labels": budget.labels[bj[perm]]}
    in_order = bool((perm == np.arange(len(perm))).all())
    for c in columns:
        kept = np.concatenate(parts[c])
        out[c] = kept if in_order else kept[perm]
    return out
