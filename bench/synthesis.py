"""Images per second of the synthesis stage (mlr_core.synthesis.synthesize: per-image seeded generators,
black-image checks, PNG files, sharded Parquet manifest, resumable) against calling the same pipeline in a
bare loop at the same batch size (one generator per call, ``.images[i].save(png)``). Writes
bench/results/synthesis.json.

Same process, same prompts (tinyworld mined captions), same batch size, steps, guidance and resolution; the
two are timed alternately ``--repeats`` times and the median of each is compared (the machine is shared).

Usage: python bench/synthesis.py [--model models/tinyworld-t2i] [--images 64] [--batch 16] [--steps 15]
                                 [--device cuda --dtype fp16]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mlr_core.io import atomic_write_json
from mlr_core.synthesis import SynthesisConfig, load_pipeline, load_prompts, synthesize

RESULTS = Path(__file__).parent / "results" / "synthesis.json"


def bare_loop(pipe, texts: list[str], out: Path, *, batch: int, steps: int, guidance: float) -> float:
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for b in range(0, len(texts), batch):
        images = pipe(prompt=texts[b:b + batch], num_inference_steps=steps, guidance_scale=guidance,
                      generator=torch.Generator(pipe.device).manual_seed(b)).images
        for i, image in enumerate(images):
            image.save(out / f"{b + i}.png")
    return time.perf_counter() - t


def stage(pipe, prompts, out: Path, cfg: SynthesisConfig) -> float:
    t = time.perf_counter()
    synthesize(pipe, prompts, out, cfg, model="bench")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/tinyworld-t2i")
    ap.add_argument("--captions", default="data/captions/mined.parquet")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model, args.device, args.dtype)
    prompts = load_prompts(args.captions).select(range(args.images))
    cfg = SynthesisConfig(images_per_caption=1, resolution=None, steps=args.steps, guidance=args.guidance,
                          batch_size=args.batch, seed=0, shard_size=args.batch * 2, max_retries=2)
    pipe(prompt=prompts.texts[:2], num_inference_steps=2, guidance_scale=args.guidance)  # warm-up
    bare, staged = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            bare.append(bare_loop(pipe, prompts.texts, Path(tmp) / f"bare{r}", batch=args.batch, steps=args.steps,
                                  guidance=args.guidance))
            staged.append(stage(pipe, prompts, Path(tmp) / f"stage{r}", cfg))
            print(f"repeat {r}: bare {bare[-1]:.2f}s, stage {staged[-1]:.2f}s")
    bare_ips, stage_ips = args.images / statistics.median(bare), args.images / statistics.median(staged)
    result = {"model": args.model, "images": args.images, "batch": args.batch, "steps": args.steps,
              "guidance": args.guidance, "threads": args.threads, "device": args.device, "dtype": args.dtype,
              "bare_loop_seconds": [round(s, 2) for s in bare], "stage_seconds": [round(s, 2) for s in staged],
              "bare_loop_images_per_second": round(bare_ips, 3), "stage_images_per_second": round(stage_ips, 3),
              "ratio": round(stage_ips / bare_ips, 3)}
    atomic_write_json(RESULTS, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
