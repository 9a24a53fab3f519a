"""Contrastive pretraining of the project's own tinyworld CLIP on part (a) of tinyworld.

What made a tiny CLIP useful on 2 CPU cores (measured, see README): captions that name every object
(synonyms, shuffled order) with colour in only ~1/4 of mentions and scenes that share colours, so the
model cannot match pairs by colour; fresh captions every step over pre-rendered images; bf16 autocast.
Some captions name only a subset of the objects (``partial_caption_prob``), as real captions do.
Model selection never looks at the benchmark: the schedule is fixed, and the zero-shot mAP logged during
training is measured on a separate stream of scenes.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from mlr_core.data.tinyworld import CLASSES, Scene, caption_scene, render_scene, sample_scene
from mlr_core.io import atomic_path
from mlr_core.metrics import multilabel_metrics

_EVAL_STREAM = 5  # a seed stream no tinyworld part uses


def _render_chw(args) -> np.ndarray:
    scene, image_size = args
    return np.asarray(render_scene(scene, image_size)).transpose(2, 0, 1)


def render_batch(scenes: list[Scene], image_size: int, desc: str) -> torch.Tensor:
    """uint8 (N, 3, S, S) tensor of rendered scenes (rendering is deterministic, so any process count)."""
    out = torch.empty((len(scenes), 3, image_size, image_size), dtype=torch.uint8)
    with multiprocessing.get_context("fork").Pool(os.cpu_count()) as pool:
        jobs = pool.imap(_render_chw, ((s, image_size) for s in scenes), chunksize=64)
        for i, arr in enumerate(tqdm(jobs, total=len(scenes), desc=desc, unit="img", mininterval=5)):
            out[i] = torch.from_numpy(arr)
    return out


def _normalise(images_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (images_u8.float() / 255.0 - mean) / std


@torch.no_grad()
def zero_shot_map(model, tokenizer, images_u8, targets, mean, std, template="a photo of a {}.") -> float:
    model.eval()
    text = F.normalize(model.encode_text(tokenizer([template.format(c) for c in CLASSES])), dim=-1)
    scores = []
    for i in range(0, len(images_u8), 256):
        img = F.normalize(model.encode_image(_normalise(images_u8[i:i + 256], mean, std)), dim=-1)
        scores.append(img @ text.T)
    model.train()
    return multilabel_metrics(torch.cat(scores).numpy(), targets)["mAP"]


def pretrain_clip(scenes: list[Scene], out_path: str | Path, log_path: str | Path, *, arch: str,
                  image_size: int, seed: int, steps: int, batch_size: int, lr: float, weight_decay: float,
                  warmup_steps: int, partial_caption_prob: float, hflip: bool, bf16: bool, eval_every: int,
                  n_eval: int) -> dict:
    """Train the tinyworld CLIP contrastively on ``scenes`` (tinyworld part (a), rendered in memory); write
    the fp16 checkpoint and the training log (loss and held-out zero-shot mAP; timings go to the console
    only, so the log is the same on every machine)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 100])
    model = open_clip.create_model(arch, pretrained=None)
    model.train()
    tokenizer = open_clip.get_tokenizer(arch)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)

    images = render_batch(scenes, image_size, "render pretrain scenes")
    eval_rng = np.random.default_rng([seed, _EVAL_STREAM])
    eval_scenes = [sample_scene(eval_rng) for _ in range(n_eval)]
    eval_images = render_batch(eval_scenes, image_size, "render eval scenes")
    eval_targets = np.zeros((n_eval, len(CLASSES)), dtype=np.int64)
    for i, s in enumerate(eval_scenes):
        eval_targets[i, s.labels] = 1

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step):
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.5 * lr * (1 + math.cos(math.pi * t))

    loss_fn = open_clip.ClipLoss()
    order = rng.permutation(len(scenes))
    cursor = 0
    log = []
    t0 = time.time()
    bar = tqdm(range(steps), desc="pretrain tinyworld CLIP", unit="step")
    for step in bar:
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(len(scenes)), 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        batch = images[idx]
        if hflip:
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            batch[flip] = batch[flip].flip(-1)
        texts = tokenizer([caption_scene(scenes[i], rng, partial_caption_prob) for i in idx])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            img_f, txt_f, scale = model(_normalise(batch, mean, std), texts)[:3]
            loss = loss_fn(img_f.float(), txt_f.float(), scale.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP's clamp of the learnable temperature
            model.logit_scale.clamp_(0, math.log(100))
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            zs = zero_shot_map(model, tokenizer, eval_images, eval_targets, mean, std)
            log.append({"step": step + 1, "loss": round(loss.item(), 4), "zero_shot_mAP": round(zs, 2)})
            tqdm.write(json.dumps({**log[-1], "minutes": round((time.time() - t0) / 60, 2)}))

    # fp16 on disk halves the checkpoint (it ships in git); loading casts back to the model's dtype.
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_path) as tmp:
        # one metadata key: safetensors writes several in a random order (different bytes each run)
        save_file(state, str(tmp), metadata={"mlr_core": json.dumps({"arch": arch, "format": "open_clip state_dict"})})
    summary = {"arch": arch, "steps": steps, "params_millions": round(sum(v.numel() for v in state.values()) / 1e6, 2),
               "final_zero_shot_mAP_heldout": log[-1]["zero_shot_mAP"], "curve": log}
    print(f"pretrain_clip: {(time.time() - t0) / 60:.1f} minutes")
    with atomic_path(log_path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
