"""One TaI-DPT training epoch on cached caption features against re-encoding the captions through the frozen
text encoder at every step (what the reference implementation does). Writes bench/results/tai_dpt_epoch.json.

Same process, same captions, same prompts (global + local, 16 shared context tokens), same batch size,
20 classes, an RN50-size text tower (open_clip RN50, random weights: timing does not depend on them).
"cached" reads the features the text_features stage stored (fp16 on disk, as the trainer loads them);
"re-encode" runs `encode_text_features` on each batch under no_grad before the same loss.

Usage: python bench/tai_dpt_epoch.py [--captions 2048] [--batch 512]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mlr_core.cache import write_text_feature_cache
from mlr_core.data.tinyworld import CLASSES, caption_scene, sample_scene
from mlr_core.io import atomic_write_json
from mlr_core.methods.tai_dpt import DoubleGrainedPrompts, PromptConfig, load_caption_features
from mlr_core.models.clip import load_clip
from mlr_core.models.features import encode_text_features
from mlr_core.train import OptimConfig, make_optimizer

RESULTS = Path(__file__).parent / "results" / "tai_dpt_epoch.json"


def epoch(prompts, batches, optimizer, encode=None) -> float:
    t = time.perf_counter()
    for batch in batches:
        if encode is not None:  # the reference: the frozen text tower on every batch of captions
            with torch.no_grad():
                feats = encode(batch["token_ids"])
            batch = {"global": feats.global_.float(), "tokens": feats.tokens.float(),
                     "mask": torch.arange(feats.tokens.shape[1])[None] < feats.lengths[:, None],
                     "labels": batch["labels"]}
        loss = prompts.text_loss(batch, scale=4.0, text_temperature=50.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--captions", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    torch.manual_seed(0)
    clip = load_clip("RN50", None, "cpu")
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(args.captions)]
    texts = [caption_scene(s, rng) for s in scenes]
    labels = np.zeros((len(texts), len(CLASSES)), np.int8)
    for i, s in enumerate(scenes):
        labels[i, s.labels] = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = write_text_feature_cache(texts, [str(i) for i in range(len(texts))], labels, list(CLASSES), clip,
                                        Path(tmp) / "captions.parquet", batch_size=256, shard_size=4096)
        t = time.perf_counter()
        tensors, _ = load_caption_features(path, clip.fingerprint)
        load_seconds = time.perf_counter() - t
    token_ids = clip.tokenizer(texts)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))
    chunks = [order[i:i + args.batch] for i in range(0, len(texts), args.batch)]
    cached_batches = [{k: v[c] for k, v in tensors.items()} for c in chunks]
    raw_batches = [{"token_ids": token_ids[c], "labels": tensors["labels"][c]} for c in chunks]
    result = {"captions": len(texts), "batch": args.batch, "classes": len(CLASSES), "text_tower": "RN50 (width 512, 12 layers, 77 tokens)",
              "cache_load_seconds": round(load_seconds, 2)}
    for name, batches, encode in (("cached", cached_batches, None),
                                  ("reencode", raw_batches, lambda ids: encode_text_features(clip.model, ids))):
        prompts = DoubleGrainedPrompts(clip, list(CLASSES), PromptConfig(n_ctx=16), seed=0)
        optim = OptimConfig("sgd", lr=2e-3, weight_decay=5e-4, batch_size=args.batch, steps=1, warmup_steps=0,
                            eval_every=1)
        opt = make_optimizer([p for p in prompts.parameters() if p.requires_grad], optim)
        result[f"{name}_epoch_seconds"] = round(epoch(prompts, batches, opt, encode), 2)
        print(name, result[f"{name}_epoch_seconds"], "s")
    result["speedup"] = round(result["reencode_epoch_seconds"] / result["cached_epoch_seconds"], 2)
    print(json.dumps(result, indent=2))
    atomic_write_json(RESULTS, result)


if __name__ == "__main__":
    main()
