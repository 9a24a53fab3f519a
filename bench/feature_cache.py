"""Benchmark the feature cache: write throughput against the bare model forward, and the streaming reader's
peak memory on a cache larger than 1 GB. Writes bench/results/feature_cache.json.

1. Throughput: the same images, the same batch size. "bare" is `model.encode_image` on already-decoded,
   already-preprocessed tensors in memory (the ceiling); "cache" is the real `write_feature_cache` from PNG
   files on disk to a finished Parquet file (decode, preprocess, global + dense extraction, fp16, write).
   Goal: cache >= 0.8x bare.
2. Reader memory: a cache of RN50-at-448-shaped rows (14x14 dense map of 1024-d features, 400 KB a row)
   made > 1 GB by the real shard merger, then streamed whole by `FeatureCache.iter_batches` in a fresh
   process; its peak RSS above the interpreter's baseline is reported.

Usage: python bench/feature_cache.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from mlr_core.cache import merge_shards, write_feature_cache
from mlr_core.data.manifest import read_manifest
from mlr_core.data.tinyworld import write_tinyworld
from mlr_core.io import atomic_write_json
from mlr_core.models.clip import load_clip

RESULTS = Path(__file__).parent / "results" / "feature_cache.json"


def throughput(arch: str, pretrained: str | None, n_images: int, batch_size: int, workdir: Path) -> dict:
    torch.manual_seed(0)
    clip = load_clip(arch, pretrained)
    write_tinyworld(workdir / "tw", seed=0, image_size=clip.image_size, min_objects=1, max_objects=4,
                    n_corpus=0, captions_per_scene=1, n_trainval=1, n_test=n_images)
    data = read_manifest(workdir / "tw/benchmark/manifest.csv", workdir / "tw/benchmark/classes.txt").subset("test")
    images = torch.stack([clip.preprocess(Image.open(p).convert("RGB")) for p in data.paths])
    with torch.no_grad():
        clip.model.encode_image(images[:batch_size])  # warm-up
        t = time.perf_counter()
        for i in range(0, n_images, batch_size):
            clip.model.encode_image(images[i:i + batch_size])
        bare = time.perf_counter() - t
    write_feature_cache(data.select(range(batch_size)), clip, workdir / "warm.parquet", batch_size=batch_size,
                        shard_size=batch_size, num_workers=1)  # warm-up (worker start, allocator)
    t = time.perf_counter()
    write_feature_cache(data, clip, workdir / f"{arch}.parquet", batch_size=batch_size, shard_size=512, num_workers=1)
    cached = time.perf_counter() - t
    return {"arch": arch, "image_size": clip.image_size, "images": n_images, "batch_size": batch_size,
            "bare_forward_img_per_s": round(n_images / bare, 1), "cache_img_per_s": round(n_images / cached, 1),
            "ratio_cache_over_bare": round(bare / cached, 3)}


def make_big_cache(path: Path, rows: int, grid: int = 14, dim: int = 1024, classes: int = 80) -> int:
    work = path.with_name(path.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shard_rows = 256
    n_shards = -(-rows // shard_rows)
    for k in range(n_shards):
        n = min(shard_rows, rows - k * shard_rows)
        fl = lambda a, w: pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), w)  # noqa: E731
        table = pa.table({
            "image_id": [f"img{k * shard_rows + i}" for i in range(n)],
            "labels": fl(rng.integers(0, 2, (n, classes), dtype=np.int8), classes),
            "global": fl(rng.standard_normal((n, dim), dtype=np.float32).astype(np.float16), dim),
            "dense": fl(rng.standard_normal((n, grid * grid * dim), dtype=np.float32).astype(np.float16), grid * grid * dim),
        }).replace_schema_metadata({b"grid": json.dumps([grid, grid]).encode(), b"skipped": b"[]"})
        pq.write_table(table, work / f"shard-{k:05d}.parquet", row_group_size=64)
    merge_shards(sorted(work.glob("shard-*.parquet")), path, {"fingerprint": "bench", "arch": "RN50", "pretrained": None, "image_size": 448,
                                        "classes": [f"c{i}" for i in range(classes)]})
    shutil.rmtree(work)
    return path.stat().st_size


READER = """
import resource, sys, time
import numpy as np
from mlr_core.cache import FeatureCache
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); rows = 0; checksum = 0.0
for b in FeatureCache(sys.argv[1]).iter_batches(("global", "dense"), batch_rows=64):
    rows += len(b.image_ids); checksum += float(b.dense[:, 0, 0].astype(np.float32).sum())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(rows, base, peak, time.perf_counter() - t)
"""


def reader_memory(workdir: Path, rows: int) -> dict:
    path = workdir / "big.parquet"
    size = make_big_cache(path, rows)
    out = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, text=True, check=True)
    n, base, peak, secs = out.stdout.split()
    return {"file_mb": round(size / 2**20), "rows": int(n), "row_kb": round(size / int(n) / 1024),
            "baseline_rss_mb": round(int(base) / 1024), "peak_rss_mb": round(int(peak) / 1024),
            "peak_above_baseline_mb": round((int(peak) - int(base)) / 1024), "read_seconds": round(float(secs), 1),
            "read_mb_per_s": round(size / 2**20 / float(secs))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmark itself)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = {"machine": {"cpus": len(__import__("os").sched_getaffinity(0)), "python": platform.python_version(),
                          "torch": torch.__version__}, "throughput": [], "reader": None}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = Path("models/tinyworld-RN.safetensors")
        runs = [("tinyworld-RN", str(ckpt) if ckpt.exists() else None, 128 if args.quick else 1024, 64),
                ("RN50", None, 16 if args.quick else 128, 32), ("ViT-B-32", None, 16 if args.quick else 64, 32)]
        for arch, weights, n, bs in runs:
            result["throughput"].append(throughput(arch, weights, n, bs, tmp / arch))
            print(json.dumps(result["throughput"][-1]))
        result["reader"] = reader_memory(tmp, 300 if args.quick else 2800)
        print(json.dumps(result["reader"]))
    if not args.quick:
        atomic_write_json(RESULTS, result)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
