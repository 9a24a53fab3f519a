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
import sys
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
from mlr_core.io import atomic_path
from mlr_core.shards import ShardedWork

META_KEY = b"mlr_core"
ROW_GROUP_ROWS = 64  # small row groups bound the reader's memory even for 14x14x1024 dense maps


class CacheMismatchError(ValueError):
    """The cache was written for another model, resolution or preprocessing."""


class ImageReadError(RuntimeError):
    """An image file is missing or cannot be decoded."""


def to_rgb8(im: Image.Image) -> Image.Image:
    """Any PIL image as the 8-bit RGB the encoder takes, upright.

    EXIF orientation is applied; 16-bit and 32-bit integer modes (``I;16*``, ``I``) are scaled from their range to
    8 bits (``convert("RGB")`` would clip them to white); float (``F``) images in [0, 1] are scaled by 255, others
    clipped to [0, 255]; modes with transparency (``LA``, ``RGBA``, ``PA``, ``P`` with a transparent colour) are
    composited onto white; CMYK, YCbCr, L, 1 and P convert as PIL does.
    """
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            a = a * 255.0 if a.size and np.nanmax(a) <= 1.0 else a
        elif im.mode.startswith("I;16") or (a.size and a.max() > 255):
            a = a / 257.0 if a.size and a.max() <= 65535 else a * (255.0 / max(a.max(), 1))
        gray = np.clip(np.nan_to_num(np.rint(a)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if im.mode in ("LA", "RGBA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


class ImageFiles(torch.utils.data.Dataset):
    """Decodes and preprocesses images (``views``: the view named by each id first); an unreadable one yields its
    error instead of a tensor."""

    def __init__(self, paths: Sequence[Path], transform, views=None, ids: Sequence[str] = ()):
        self.paths, self.transform, self.views, self.ids = list(paths), transform, views, list(ids)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            with Image.open(self.paths[i]) as im:
                rgb = to_rgb8(im)
                return i, self.transform(self.views.apply(rgb, self.ids[i]) if self.views else rgb), None
        except Exception as e:  # noqa: BLE001 - any decoder error becomes one clear message naming the file
            return i, None, f"cannot read image {self.paths[i]}: {type(e).__name__}: {e}"


def load_images(paths: Sequence[Path], transform) -> np.ndarray:
    """The images at ``paths``, decoded and preprocessed as the cache writer does, stacked (N, 3, H, W) in float16
    (half the memory). For the paths that train on pixels rather than cached features (PVLR ``ft-`` runs); an
    unreadable image raises :class:`ImageReadError` naming it (the caller passes only images the features stage
    could read)."""
    files, out = ImageFiles(paths, transform), []
    for i in tqdm(range(len(files)), desc="load images", unit="image", leave=False, disable=len(files) < 256):
        _, x, err = files[i]
        if err is not None:
            raise ImageReadError(err)
        out.append(x.to(torch.float16).numpy())
    return np.stack(out) if out else np.zeros((0, 3, 1, 1), np.float16)


def collate_images(items):
    ok = [(i, x) for i, x, err in items if err is None]
    errors = [(i, err) for i, x, err in items if err is not None]
    images = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], images, errors


def _fixed_list(values: np.ndarray, width: int) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)


def item_list_hash(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def items_digest(ids: Sequence[str], labels: np.ndarray, paths: Sequence[Path] | None = None):
    """``digest(lo, hi)``: what determines the bytes of items lo:hi besides the model (their ids, label rows and,
    for images, the files' contents): a resumed shard is reused only while it is unchanged."""

    def digest(lo: int, hi: int) -> str:
        h = hashlib.sha256()
        for i in range(lo, hi):
            h.update(ids[i].encode() + b"\0" + np.ascontiguousarray(labels[i], dtype=np.int8).tobytes())
            if paths is not None:
                try:
                    h.update(hashlib.sha256(Path(paths[i]).read_bytes()).digest())
                except OSError:
                    h.update(b"unreadable")  # reported (or refused) by name when the shard is encoded
        return h.hexdigest()

    return digest


def _write_sharded(out_path: Path, ids: Sequence[str], state: dict, shard_size: int, encode_shard, meta: dict,
                   processes, unit: str, shard_inputs) -> Path:
    """The image and text caches on :class:`mlr_core.shards.ShardedWork`.

    ``encode_shard(lo, hi, bar)`` returns the Parquet table of items ``lo:hi``; ``state`` identifies the
    inputs (model fingerprint, ...), to which the item list is added: shards left by another run are discarded.
    """
    state = {**state, "items": item_list_hash(ids), "n": len(ids), "shard_size": shard_size}
    work = ShardedWork(out_path.with_name(out_path.name + ".partial"), state, n_items=len(ids),
                       shard_size=shard_size, processes=processes, what="feature cache", shard_inputs=shard_inputs)
    todo = work.todo()
    bar = tqdm(total=sum(hi - lo for lo, hi in map(work.bounds, todo)), desc=f"encode {out_path.name}", unit=unit)
    for k in todo:
        work.write(k, encode_shard(*work.bounds(k), bar), row_group_size=ROW_GROUP_ROWS)
    bar.close()
    work.processes.wait_for_everyone()
    if work.processes.is_main_process:
        merge_shards(work.shards(), out_path, meta)
        work.done()
    work.processes.wait_for_everyone()
    return out_path


def _model_meta(clip) -> dict:
    return {"fingerprint": clip.fingerprint, "weights_id": clip.weights_id, "arch": clip.arch,
            "pretrained": clip.pretrained, "image_size": clip.image_size}


def write_feature_cache(data: LabelledImages, clip, out_path: str | Path, *, batch_size: int, shard_size: int,
                        num_workers: int = 0, on_unreadable: str = "skip", processes=None,
                        extra_meta: dict | None = None, views=None) -> Path:
    """Encode ``data`` with ``clip`` (a :class:`mlr_core.models.clip.LoadedClip`) into ``out_path``.

    ``views`` (a :class:`mlr_core.views.ViewAugment`): encode its ``n`` augmented views of each image instead, a
    row each under the view's id (``<image id>#view<k>``, the image's labels).

    ``on_unreadable="skip"`` reports every image that cannot be decoded by name and leaves it out (the
    list is kept in the cache metadata under ``skipped``); ``"error"`` raises :class:`ImageReadError`.
    ``processes`` is an ``accelerate.PartialState`` when launched with ``accelerate launch``: process
    ``r`` of ``n`` encodes shards ``r, r + n, ...``, and the main process merges them once all are done.
    """
    from mlr_core.models.features import encode_image_features  # open_clip: only the writers need it

    if on_unreadable not in ("skip", "error"):
        raise ValueError(f"features.on_unreadable must be 'skip' or 'error', got {on_unreadable!r}")
    if views is not None:
        data = views.expand(data)

    def encode_shard(lo, hi, bar):
        files = ImageFiles(data.paths[lo:hi], clip.preprocess, views, data.image_ids[lo:hi])
        loader = torch.utils.data.DataLoader(files, batch_size=batch_size,
                                             num_workers=num_workers, shuffle=False, collate_fn=collate_images)
        rows, globals_, denses, skipped = [], [], [], []
        grid = dim = None
        with torch.no_grad():
            for idx, images, errors in loader:
                for i, err in errors:
                    if on_unreadable == "error":
                        raise ImageReadError(err)
                    tqdm.write(f"skipped: {err}", file=sys.stderr)
                    skipped.append([data.image_ids[lo + i], err])
                bar.update(len(idx) + len(errors))
                if images is None:
                    continue
                feats = encode_image_features(clip.model, images.to(clip.device, next(clip.model.parameters()).dtype))
                rows += [lo + i for i in idx]
                globals_.append(feats.global_.to(torch.float16).cpu().numpy())
                denses.append(feats.dense.to(torch.float16).cpu().numpy())
                grid, dim = feats.grid, feats.global_.shape[1]
        if not rows:
            raise ImageReadError(f"no readable image in {data.paths[lo]} .. {data.paths[hi - 1]}")
        g, d = np.concatenate(globals_), np.concatenate(denses)
        return pa.table({
            "image_id": pa.array([data.image_ids[r] for r in rows], pa.string()),
            "labels": _fixed_list(data.targets[rows].astype(np.int8), len(data.classes)),
            "global": _fixed_list(g, dim),
            "dense": _fixed_list(d, d.shape[1] * dim),
        }).replace_schema_metadata({b"grid": json.dumps(list(grid)).encode(), b"skipped": json.dumps(skipped).encode()})

    state = {"fingerprint": clip.fingerprint, "classes": data.classes}
    meta = {**(extra_meta or {}), **_model_meta(clip), "classes": data.classes}
    if views is not None:  # the views' pixels depend on these: a resume with others redoes every shard
        state["views"] = meta["views"] = views.record()
    return _write_sharded(Path(out_path), data.image_ids, state, shard_size, encode_shard, meta, processes, "img",
                          items_digest(data.image_ids, data.targets, data.paths))


def write_text_feature_cache(texts: Sequence[str], ids: Sequence[str], labels: np.ndarray, classes: list[str], clip,
                             out_path: str | Path, *, batch_size: int, shard_size: int, processes=None,
                             extra_meta: dict | None = None) -> Path:
    """Encode sentences with the frozen text tower: ``global`` = the EOT feature, ``dense`` = every valid
    token's projected feature (SOT..EOT, padding dropped; ``length`` tokens a row). Text stands in for
    images in text-only training (TaI-DPT), so the layout matches the image cache."""
    from mlr_core.models.features import encode_text_features

    texts, ids = list(texts), list(ids)

    def encode_shard(lo, hi, bar):
        globals_, tokens, lengths = [], [], []
        with torch.no_grad():
            for i in range(lo, hi, batch_size):
                chunk = texts[i:min(hi, i + batch_size)]
                feats = encode_text_features(clip.model, clip.tokenizer(chunk).to(clip.device))
                globals_.append(feats.global_.to(torch.float16).cpu().numpy())
                for row, n in zip(feats.tokens.to(torch.float16).cpu().numpy(), feats.lengths.tolist()):
                    tokens.append(row[:n].reshape(-1))
                    lengths.append(n)
                bar.update(len(chunk))
        g = np.concatenate(globals_)
        return pa.table({
            "image_id": pa.array(ids[lo:hi], pa.string()),
            "labels": _fixed_list(labels[lo:hi].astype(np.int8), len(classes)),
            "global": _fixed_list(g, g.shape[1]),
            "dense": pa.array(tokens, pa.list_(pa.float16())),
            "length": pa.array(lengths, pa.int16()),
        }).replace_schema_metadata({b"grid": b"null", b"skipped": b"[]"})

    state = {"fingerprint": clip.fingerprint, "classes": classes, "texts": item_list_hash(texts)}
    meta = {**(extra_meta or {}), **_model_meta(clip), "classes": classes, "kind": "text"}
    return _write_sharded(Path(out_path), ids, state, shard_size, encode_shard, meta, processes, "text",
                          items_digest(ids, labels))


def merge_shards(shards: Sequence[Path], out_path: Path, meta: dict) -> None:
    """Concatenate the shards, in the order given, into ``out_path`` (atomic)."""
    first = pq.ParquetFile(shards[0])
    grid = json.loads(first.schema_arrow.metadata[b"grid"])
    skipped = [item for s in shards for item in json.loads(pq.ParquetFile(s).schema_arrow.metadata[b"skipped"])]
    meta = {**meta, "grid": grid, "dim": first.schema_arrow.field("global").type.list_size,
            "n": sum(pq.ParquetFile(s).metadata.num_rows for s in shards), "skipped": skipped}
    schema = first.schema_arrow.with_metadata({META_KEY: json.dumps(meta).encode()})
    with atomic_path(out_path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for s in shards:
                pf = pq.ParquetFile(s)
                for rg in range(pf.num_row_groups):
                    writer.write_table(pf.read_row_group(rg).replace_schema_metadata(schema.metadata))


@dataclass
class FeatureBatch:
    image_ids: list[str]
    labels: np.ndarray  # (b, C) int8
    global_: np.ndarray | None  # (b, D) float16
    dense: np.ndarray | None  # (b, H*W, D) float16; text caches: (b, L, D) zero-padded tokens
    mask: np.ndarray | None = None  # text caches: (b, L) bool, True at valid tokens


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
        self.is_text = self.meta.get("kind") == "text"
        self.grid: tuple[int, int] | None = None if self.is_text else tuple(self.meta["grid"])
        self.dim: int = self.meta["dim"]
        # text rows have variable length: pad every batch to the longest row of the whole cache
        self.max_length = (int(pq.read_table(self.path, columns=["length"])["length"].to_numpy().max())
                           if self.is_text and len(self) else None)

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
        cols = ["image_id", "labels", *columns, *(["length"] if self.is_text and "dense" in columns else [])]
        for rb in self._file.iter_batches(batch_size=batch_rows, columns=cols):
            n = rb.num_rows

            def flat(name):
                return rb.column(name).values.to_numpy(zero_copy_only=False)

            dense = mask = None
            if "dense" in columns and self.is_text:
                lengths = rb.column("length").to_numpy()
                mask = np.arange(self.max_length)[None, :] < lengths[:, None]
                dense = np.zeros((n, self.max_length, self.dim), np.float16)
                dense[mask] = flat("dense").reshape(-1, self.dim)
            elif "dense" in columns:
                dense = flat("dense").reshape(n, -1, self.dim)
            yield FeatureBatch(
                image_ids=rb.column("image_id").to_pylist(),
                labels=flat("labels").reshape(n, -1),
                global_=flat("global").reshape(n, self.dim) if "global" in columns else None,
                dense=dense, mask=mask,
            )

    def read(self, columns: Sequence[str] = ("global",)) -> FeatureBatch:
        """The whole cache in memory (for the small global features; stream dense ones)."""
        parts = list(self.iter_batches(columns))
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts]) if getattr(parts[0], name) is not None else None  # noqa: E731
        return FeatureBatch(sum((p.image_ids for p in parts), []), cat("labels"), cat("global_"), cat("dense"),
                            cat("mask"))
