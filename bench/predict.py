"""Benchmark the predict command: its throughput against the bare image-encoder forward at the same batch size.
Writes bench/results/predict.json.

"bare" is `encode_image_features` (the one forward that gives the global and dense features predict scores) on
already-decoded, already-preprocessed tensors in memory: the ceiling. "predict" is the real `mlr_core.predict`
from PNG files on disk to a finished CSV (decode, preprocess, encode, float16 rounding, DPT scoring of global
and dense features, resumable shards, the output written), with 0 and 1 image-decoding workers. Its rate is the
marginal one: (N - N/2) / (time of a run on N images - time of a run on the first N/2), so the one-off start
(building the backbone from its checkpoint, loading the export) is left out.
The classifier is a zero-shot DPT export (the same scorer class and cost as TaI-DPT's). Goal: predict >= 0.9x
bare.

Backbones: the tinyworld CLIP (its checkpoint, 128 px) on tinyworld test images, and a random-weight RN50 at
224 px (the scoring and I/O do not depend on the weights) on the same images.

Usage: python bench/predict.py [--quick]
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from mlr_core.calibration import top_k_decision
from mlr_core.classifier import save_classifier
from mlr_core.data.tinyworld import CLASSES, write_tinyworld
from mlr_core.io import atomic_write_json
from mlr_core.methods.zsclip import zero_shot_scorer
from mlr_core.models.clip import load_clip, model_info, write_random_checkpoint
from mlr_core.models.features import encode_image_features
from mlr_core.predict import predict

RESULTS = Path(__file__).parent / "results" / "predict.json"


def one_backbone(arch: str, checkpoint: Path, folder: Path, batch_size: int, workdir: Path) -> dict:
    clip = load_clip(arch, str(checkpoint), "cpu")
    scorer = zero_shot_scorer(clip, list(CLASSES), template="a photo of a {}.", scale=4.0, local_temperature=40.0,
                              local_weight=0.5, use_local=True)
    classifier = save_classifier(workdir / f"{arch}.safetensors", scorer, method="zsclip_dpt", run=None,
                                 classes=list(CLASSES), decision=top_k_decision(3), backbone=model_info(clip))
    files = sorted(folder.glob("*.png"))
    images = torch.stack([clip.preprocess(Image.open(p).convert("RGB")) for p in files])
    with torch.no_grad():
        encode_image_features(clip.model, images[:batch_size])  # warm-up
        t = time.perf_counter()
        for i in range(0, len(images), batch_size):
            encode_image_features(clip.model, images[i:i + batch_size])
        bare = len(images) / (time.perf_counter() - t)
    out = {"arch": arch, "image_size": clip.image_size, "images": len(files), "batch_size": batch_size,
           "bare_forward_img_per_s": round(bare, 1)}
    half = workdir / f"{arch}_half"
    half.mkdir()
    for f in files[:len(files) // 2]:
        (half / f.name).write_bytes(f.read_bytes())
    for workers in (0, 1):
        seconds = {}
        for name, source in (("half", half), ("all", folder)):
            t = time.perf_counter()
            predict(classifier, [source], workdir / f"{arch}_{workers}_{name}.csv", batch_size=batch_size,
                    shard_size=256, num_workers=workers, device="cpu")
            seconds[name] = time.perf_counter() - t
        rate = (len(files) - len(files) // 2) / (seconds["all"] - seconds["half"])
        out[f"predict_workers{workers}_img_per_s"] = round(rate, 1)
        out[f"ratio_workers{workers}_over_bare"] = round(rate / bare, 3)
    print(out, file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer images (a smoke run; not for the results file)")
    args = ap.parse_args()
    n_tiny, n_rn50 = (64, 16) if args.quick else (1024, 128)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        write_tinyworld(d / "tw", seed=0, image_size=128, min_objects=1, max_objects=4, n_corpus=0,
                        captions_per_scene=1, n_trainval=1, n_test=n_tiny)
        folder = d / "tw" / "benchmark" / "images" / "test"
        rn50 = write_random_checkpoint("RN50", d / "rn50.safetensors", seed=0)
        (d / "rn50_images").mkdir()
        for f in sorted(folder.glob("*.png"))[:n_rn50]:
            (d / "rn50_images" / f.name).write_bytes(f.read_bytes())
        rows = [one_backbone("tinyworld-RN", Path("models/tinyworld-RN.safetensors"), folder, 64, d),
                one_backbone("RN50", rn50, d / "rn50_images", 32, d)]
    result = {"machine": {"cpus": torch.get_num_threads(), "python": platform.python_version(),
                          "torch": torch.__version__},
              "goal": "predict >= 0.9x the bare image-encoder forward at the same batch size", "throughput": rows}
    if not args.quick:
        atomic_write_json(RESULTS, result)
    print(result)


if __name__ == "__main__":
    main()
