"""Training throughput (images per second) of DualCoOp and PVLR on cached dense image features against
recomputing the frozen image features at every step, as the reference implementations do.
Writes bench/results/image_supervised_training.json.

The paper setting: an RN101-size CLIP (open_clip RN101, random weights: timing does not depend on them) at
448 px, whose last feature map is 14 x 14 with embed 512, 20 classes (VOC). "cached" feeds the stored dense
features (fp16 on disk, loaded as fp32, as the trainer does); "recompute" runs the frozen image tower
(`encode_image_features`, no_grad) on each batch of images before the same training step. Both run the text
tower for the learnable prompts at every step (the methods need it). Same process, same batches.

Usage: python bench/image_supervised_training.py [--batch 8] [--steps 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mlr_core.data.tinyworld import CLASSES
from mlr_core.io import atomic_write_json
from mlr_core.methods.dualcoop import DualCoOp, DualCoOpConfig
from mlr_core.methods.pvlr import PVLR, PvlrConfig
from mlr_core.models.clip import load_clip
from mlr_core.models.features import encode_image_features
from mlr_core.train import OptimConfig, make_optimizer

RESULTS = Path(__file__).parent / "results" / "image_supervised_training.json"


def steps_per_second(loss_fn, params, batches, encode=None) -> float:
    # only the optimiser is used: the budget and batch size fields do not matter here
    opt = make_optimizer(params, OptimConfig(optimizer="adamw", lr=1e-4, weight_decay=0.0, batch_size=1, steps=1,
                                             warmup_steps=0, eval_every=1))
    for i, (x, y) in enumerate(batches):
        if i == 1:  # the first step warms up allocators and kernels: not timed
            t = time.perf_counter()
        if encode is not None:
            with torch.no_grad():
                x = encode(x)
        loss = loss_fn({"dense": x, "labels": y})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (len(batches) - 1) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3, help="timed steps (one more untimed warm-up step)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=448)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clip = load_clip("RN101", None, "cpu", image_size=args.image_size)
    classes = list(CLASSES)
    g = torch.Generator().manual_seed(0)
    n = args.steps + 1
    images = [torch.randn(args.batch, 3, args.image_size, args.image_size, generator=g) for _ in range(n)]
    labels = [(torch.rand(args.batch, len(classes), generator=g) < 0.15).long() for _ in range(n)]
    with torch.no_grad():
        dense = [encode_image_features(clip.model, x).dense.half() for x in images]  # what the cache stores
    grid = int(dense[0].shape[1] ** 0.5)
    cached = [(d.float(), y) for d, y in zip(dense, labels)]
    raw = list(zip(images, labels))

    def encode(x):
        return encode_image_features(clip.model, x).dense.float()

    result = {"backbone": f"RN101 (random weights) at {args.image_size} px", "dense_map": f"{grid}x{grid}",
              "embed": int(dense[0].shape[-1]), "classes": len(classes), "batch": args.batch,
              "timed_steps": args.steps, "threads": args.threads, "device": "cpu"}
    methods = {
        "dualcoop": lambda: DualCoOp(clip, classes, DualCoOpConfig(n_ctx=16, class_specific=True), seed=0),
        "pvlr": lambda: PVLR(clip, classes, PvlrConfig(n_ctx=4, num_heads=8), seed=0),
    }
    for name, build in methods.items():
        for mode, batches, enc in (("cached", cached, None), ("recompute", raw, encode)):
            model = build()
            if name == "dualcoop":
                loss_fn = lambda b, m=model: m.loss(b, 1.0, 2.0, 0.05)  # noqa: E731
            else:
                loss_fn = lambda b, m=model: m.loss(b, gamma_pos=0.0, gamma_neg=2.0, clip=0.05, kcr_weight=4.0)  # noqa: E731
            sps = steps_per_second(loss_fn, [p for p in model.parameters() if p.requires_grad], batches, enc)
            result[f"{name}_{mode}_images_per_second"] = round(sps * args.batch, 2)
            print(name, mode, result[f"{name}_{mode}_images_per_second"], "img/s", flush=True)
        result[f"{name}_speedup"] = round(result[f"{name}_cached_images_per_second"]
                                          / result[f"{name}_recompute_images_per_second"], 2)
    print(json.dumps(result, indent=2))
    atomic_write_json(RESULTS, result)


if __name__ == "__main__":
    main()
