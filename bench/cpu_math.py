"""What pinning the CPU math kernels to AVX2 (mlr_core/__init__.py, the default) costs, and what it buys.

Each setting runs in a fresh process (the libraries read it at their first computation): the tiny tinyworld
CLIP and a random-weight RN50 encode the same images and texts, timed after a warm-up; the outputs are hashed.
With the pin the hashes must not depend on the thread count (1 vs 2 here) and are what any AVX2 x86 CPU
gives; ``native`` lets MKL / oneDNN use AVX-512 (or AMX) where the CPU has it.

Usage: python bench/cpu_math.py [--images 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from mlr_core.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "cpu_math.json"

_WORKER = r"""
import hashlib, json, sys, time
import mlr_core  # pins (or not) before the first computation
import torch
from mlr_core.models.clip import load_clip
from mlr_core.models.features import encode_image_features

n, repeats = int(sys.argv[1]), int(sys.argv[2])
out = {"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
for arch, ckpt in (("tinyworld-RN", "models/tinyworld-RN.safetensors"), ("RN50", None)):
    torch.manual_seed(0)
    clip = load_clip(arch, ckpt, "cpu")
    images = torch.randn(n, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(1))
    tokens = clip.tokenizer([f"a photo of a thing number {i}." for i in range(n)])
    with torch.no_grad():
        feats = encode_image_features(clip.model, images[:4])  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            feats = encode_image_features(clip.model, images)
            text = clip.model.encode_text(tokens)
            times.append(time.perf_counter() - t)
    digest = hashlib.sha256(feats.global_.numpy().tobytes() + feats.dense.numpy().tobytes() + text.numpy().tobytes())
    out[arch] = {"items_per_s": round(n / min(times), 2), "sha256": digest.hexdigest()[:16]}
print(json.dumps(out))
"""


def run(setting: str, threads: int, n: int, repeats: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    env.update({"MLR_CPU_MATH": setting, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"})
    p = subprocess.run([sys.executable, "-c", _WORKER, str(n), str(repeats)], cwd=ROOT, env=env, capture_output=True,
                       text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs = {f"{s}/{t}": run(s, t, args.images, args.repeats) for s in ("avx2", "native") for t in (2, 1)}
    for name, r in runs.items():
        print(name, json.dumps(r))
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    result = {"images": args.images, "runs": runs, "cpu": runs["native/2"]["capability"], "cpu_model": model,
              "pin": "MKL_CBWR=AVX2,STRICT, ATEN_CPU_CAPABILITY=avx2, oneDNN off (mlr_core/__init__.py)",
              "pinned_identical_across_threads": all(runs["avx2/2"][a]["sha256"] == runs["avx2/1"][a]["sha256"]
                                                     for a in ("tinyworld-RN", "RN50")),
              "speed_ratio_pinned_over_native": {a: round(runs["avx2/2"][a]["items_per_s"] /
                                                          runs["native/2"][a]["items_per_s"], 3)
                                                 for a in ("tinyworld-RN", "RN50")}}
    atomic_write_json(OUT, result)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
