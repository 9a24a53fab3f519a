"""The Parquet feature cache: images are encoded once; every method reads the cache, never the pixels.

One file per (dataset split, model): a row per image with ``image_id``, ``labels`` (C int8: 1 / 0 /
IGNORE), ``global`` (D float16, equal to ``encode_image``) and ``dense`` (H*W*D float16, per-location
features in the joint space). The file metadata holds, under ``mlr_core``, the model fingerprint (weights
+ resolution + preprocessing), the class names, the grid and the feature size.

Writing is resumable and atomic: images are encoded in shards of ``shard_size`` images, each shard an
atomically written Parquet file in ``<out>.partial/``; a killed run resumes at the first missing shard
(if the fingerprint and image list are unchanged), and the shards are merged in index order into ``<out>``
with one ``os.replace`` at the end. Shard ``k`` is encoded by process ``k % world_size``, so data-parallel
runs produce the same file as a single process.

Reading streams row groups (:meth:`FeatureCache.iter_batches`), so memory does not grow with the cache.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from tqdm import tqdm

from mlr_core.data.manifest import LabelledImages
from mlr_core.io import atomic_path, atomic_write_json
from mlr_core.models.features import encode_image_features

META_KEY = b"mlr_core"
ROW_GROUP_ROWS = 64  # small row groups bound the reader's memory even for 14x14x1024 dense maps


class CacheMismatchError(ValueError):
    """The cache was written for another model, resolution or preprocessing."""


class ImageReadError(RuntimeError):
    """An image file is missing or cannot be decoded."""


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[Path], transform):
        self.paths, self.transform = list(paths), transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            with Image.open(self.paths[i]) as im:
                return self.transform(im.convert("RGB"))
        except Exception as e:  # noqa: BLE001 - any decoder error becomes one clear message naming the file
            raise ImageReadError(f"cannot read image {self.paths[i]}: {type(e).__name__}: {e}") from None


def _fixed_list(values: np.ndarray, width: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)


def _image_list_hash(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def write_feature_cache(data: LabelledImages, clip, out_path: str | Path, *, batch_size: int, shard_size: int,
                        num_workers: int = 0, rank: int = 0, world_size: int = 1, extra_meta: dict | None = None,
                        merge: bool = True) -> Path:
    """Encode ``data`` with ``clip`` (a :class:`mlr_core.models.clip.LoadedClip`) into ``out_path``."""
    out_path = Path(out_path)
    work = out_path.with_name(out_path.name + ".partial")
    state = {"fingerprint": clip.fingerprint, "images": _image_list_hash(data.image_ids), "n": len(data),
             "shard_size": shard_size, "classes": data.classes}
    state_file = work / "state.json"
    if work.exists() and (not state_file.exists() or json.loads(state_file.read_text()) != state):
        shutil.rmtree(work)  # stale shards from another model or image list must never be mixed in
    work.mkdir(parents=True, exist_ok=True)
    if not state_file.exists():
        atomic_write_json(state_file, state)

    n_shards = math.ceil(len(data) / shard_size)
    mine = [k for k in range(n_shards) if k % world_size == rank]
    todo = [k for k in mine if not (work / f"shard-{k:05d}.parquet").exists()]
    if len(todo) < len(mine):
        print(f"feature cache: resuming, {len(mine) - len(todo)} of {len(mine)} shards already done")
    grid = dim = None
    bar = tqdm(total=sum(min(shard_size, len(data) - k * shard_size) for k in todo), desc=f"encode {out_path.name}",
               unit="img")
    for k in todo:
        lo, hi = k * shard_size, min(len(data), (k + 1) * shard_size)
        loader = torch.utils.data.DataLoader(_ImageFiles(data.paths[lo:hi], clip.preprocess), batch_size=batch_size,
                                             num_workers=num_workers, shuffle=False)
        globals_, denses = [], []
        with torch.no_grad():
            for images in loader:
                feats = encode_image_features(clip.model, images.to(clip.device, next(clip.model.parameters()).dtype))
                globals_.append(feats.global_.to(torch.float16).cpu().numpy())
                denses.append(feats.dense.to(torch.float16).cpu().numpy())
                grid, dim = feats.grid, feats.global_.shape[1]
                bar.update(len(images))
        g, d = np.concatenate(globals_), np.concatenate(denses)
        table = pa.table({
            "image_id": pa.array(data.image_ids[lo:hi], pa.string()),
            "labels": _fixed_list(data.targets[lo:hi].astype(np.int8), len(data.classes)),
            "global": _fixed_list(g, dim),
            "dense": _fixed_list(d, d.shape[1] * dim),
        }).replace_schema_metadata({b"grid": json.dumps(list(grid)).encode()})
        with atomic_path(work / f"shard-{k:05d}.parquet") as tmp:
            pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)
    bar.close()
    if merge:
        merge_shards(work, out_path, n_shards, {**(extra_meta or {}), "fingerprint": clip.fingerprint,
                                                "arch": clip.arch, "pretrained": clip.pretrained,
                                                "image_size": clip.image_size, "classes": data.classes})
    return out_path


def merge_shards(work: Path, out_path: Path, n_shards: int, meta: dict) -> None:
    """Concatenate the shards in index order into ``out_path`` (atomic), then remove ``work``."""
    shards = [work / f"shard-{k:05d}.parquet" for k in range(n_shards)]
    missing = [s.name for s in shards if not s.exists()]
    if missing:
        raise RuntimeError(f"{work}: cannot merge, shards missing: {missing[:5]}")
    first = pq.ParquetFile(shards[0])
    grid = json.loads(first.schema_arrow.metadata[b"grid"])
    meta = {**meta, "grid": grid, "dim": first.schema_arrow.field("global").type.list_size,
            "n": sum(pq.ParquetFile(s).metadata.num_rows for s in shards)}
    schema = first.schema_arrow.with_metadata({META_KEY: json.dumps(meta).encode()})
    with atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for s in shards:
                pf = pq.ParquetFile(s)
                for rg in range(pf.num_row_groups):
                    writer.write_table(pf.read_row_group(rg).replace_schema_metadata(schema.metadata))
    shutil.rmtree(work)


@dataclass
class FeatureBatch:
    image_ids: list[str]
    labels: np.ndarray  # (b, C) int8
    global_: np.ndarray | None  # (b, D) float16
    dense: np.ndarray | None  # (b, H*W, D) float16


class FeatureCache:
    """Read side of the cache. ``expect_fingerprint`` refuses a cache made with another model."""

    def __init__(self, path: str | Path, expect_fingerprint: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: feature cache not found (run the features stage first)")
        self._file = pq.ParquetFile(self.path)
        raw = (self._file.schema_arrow.metadata or {}).get(META_KEY)
        if raw is None:
            raise CacheMismatchError(f"{self.path}: not a feature cache written by mlr_core (no metadata)")
        self.meta = json.loads(raw)
        if expect_fingerprint is not None:
            self.require_fingerprint(expect_fingerprint)
        self.classes: list[str] = self.meta["classes"]
        self.grid: tuple[int, int] = tuple(self.meta["grid"])
        self.dim: int = self.meta["dim"]

    def __len__(self) -> int:
        return self.meta["n"]

    def require_fingerprint(self, fingerprint: str) -> None:
        if self.meta["fingerprint"] != fingerprint:
            raise CacheMismatchError(
                f"{self.path}: cache fingerprint {self.meta['fingerprint']} (model {self.meta['arch']}, "
                f"weights {self.meta['pretrained']}, {self.meta['image_size']} px) does not match the model in "
                f"params (fingerprint {fingerprint}); re-run the features stage (dvc repro)")

    def iter_batches(self, columns: Sequence[str] = ("global",), batch_rows: int = 1024) -> Iterator[FeatureBatch]:
        """Stream the cache; ``columns`` chooses among ``global`` and ``dense`` (ids and labels always come)."""
        cols = ["image_id", "labels", *columns]
        for rb in self._file.iter_batches(batch_size=batch_rows, columns=cols):
            n = rb.num_rows
            def flat(name):
                return rb.column(name).values.to_numpy(zero_copy_only=False)
            yield FeatureBatch(
                image_ids=rb.column("image_id").to_pylist(),
                labels=flat("labels").reshape(n, -1),
                global_=flat("global").reshape(n, self.dim) if "global" in columns else None,
                dense=flat("dense").reshape(n, -1, self.dim) if "dense" in columns else None,
            )

    def read(self, columns: Sequence[str] = ("global",)) -> FeatureBatch:
        """The whole cache in memory (for the small global features; stream dense ones)."""
        parts = list(self.iter_batches(columns))
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts]) if getattr(parts[0], name) is not None else None  # noqa: E731
        return FeatureBatch(sum((p.image_ids for p in parts), []), cat("labels"), cat("global_"), cat("dense"))
