"""Training of the tinyworld text-to-image model (a stock StableDiffusionPipeline, see mlr_core.models.t2i).

Two phases on part (a) of tinyworld (the pretraining scenes, never the benchmark): a small AutoencoderKL
on rendered scenes, then a small UNet2DConditionModel on its latents, conditioned on the frozen tinyworld
CLIP text tower (converted to a CLIPTextModel) reading fresh captions every step. What keeps it cheap on a
CPU core: 64 px images -> 16x16x4 latents encoded once, bf16 autocast, epsilon prediction with min-SNR
loss weights, an EMA of the UNet weights, and 10% empty captions so sampling can use classifier-free
guidance. The run checkpoints every ``ckpt_every`` steps into ``<out>.partial/`` and a killed run resumes
there. Nothing looks at the benchmark: the figures logged at the end come from a separate stream of scenes.
"""
from __future__ import annotations

import copy
import json
import math
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mlr_core.data.tinyworld import CLASSES, Scene, caption_scene, sample_scene
from mlr_core.io import atomic_dir, atomic_path, atomic_write_json
from mlr_core.models.pretrain import render_batch, zero_shot_map
from mlr_core.models.t2i import (assemble_pipeline, build_clip_tokenizer, build_scheduler, build_unet, build_vae,
                                 convert_open_clip_text, load_open_clip_state, load_t2i, save_pipeline)
from mlr_core.train import warmup_cosine

_EVAL_STREAM = 6  # a seed stream no tinyworld part (1-4) nor the CLIP pretraining eval (5) uses


def _to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.float() / 127.5 - 1.0


def _save_ckpt(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _lr_at(step: int, lr: float, warmup: int, total: int, restarts: tuple[int, ...] = ()) -> float:
    """Linear warm-up, then cosine decay to 0 at ``total``. Each step in ``restarts`` begins a new cycle
    (warm-up + cosine ending at the next restart or at ``total``): SGDR-style warm restarts."""
    cycle_start = max([0] + [r for r in restarts if r <= step])
    cycle_end = min([r for r in restarts if r > step] + [total])
    return warmup_cosine(step - cycle_start, warmup, cycle_end - cycle_start, peak=lr)


def train_vae(vae, images_u8: torch.Tensor, *, steps: int, batch_size: int, lr: float, kl_weight: float,
              bf16: bool, rng: np.random.Generator, ckpt: Path, ckpt_every: int, log: list) -> None:
    """MSE reconstruction + a small KL term (per latent element), random horizontal flips; resumable."""
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    start = 0
    if ckpt.is_file():
        st = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(st["vae"]), opt.load_state_dict(st["opt"]), rng.bit_generator.__setstate__(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        start = st["step"]
        log.extend(st["log"])
    vae.train()
    bar = tqdm(range(start, steps), desc="t2i: train VAE", unit="step", initial=start, total=steps)
    for step in bar:
        idx = rng.integers(0, len(images_u8), batch_size)
        x = _to_unit(images_u8[idx])
        flip = torch.from_numpy(rng.random(batch_size) < 0.5)
        x[flip] = x[flip].flip(-1)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, lr, min(100, steps // 10), steps)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample
        rec_loss = F.mse_loss(rec.float(), x)
        kl = post.kl().float().mean() / post.mean[0].numel()
        loss = rec_loss + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(mse=f"{rec_loss.item():.4f}", kl=f"{kl.item():.2f}")
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            log.append({"phase": "vae", "step": step + 1, "mse": round(rec_loss.item(), 5), "kl": round(kl.item(), 3)})
            tqdm.write(json.dumps(log[-1]))
            _save_ckpt(ckpt, {"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step + 1, "log": log,
                              "rng": rng.bit_generator.__getstate__(), "torch_rng": torch.get_rng_state()})
    vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_latents(vae, images_u8: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Posterior means of all images (unscaled), in fp32."""
    out = []
    for i in tqdm(range(0, len(images_u8), batch_size), desc="t2i: encode latents", unit="batch"):
        out.append(vae.encode(_to_unit(images_u8[i:i + batch_size])).latent_dist.mean.float())
    return torch.cat(out)


def finetune_decoder(vae, latents: torch.Tensor, images_u8: torch.Tensor, *, steps: int, batch_size: int, lr: float,
                     bf16: bool, rng: np.random.Generator, ckpt: Path, ckpt_every: int, log: list) -> None:
    """Train only the decoder side (post_quant_conv + decoder) on (latent, image) pairs, as Stable Diffusion's
    ft-MSE VAE: the encoder and so the latent space the UNet learns stay fixed, so this phase is independent
    of the UNet's. MSE + L1 on the pixels; resumable."""
    params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    start = 0
    if ckpt.is_file():
        st = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(st["vae"]), opt.load_state_dict(st["opt"]), rng.bit_generator.__setstate__(st["rng"])
        start = st["step"]
        log.extend(st["log"])
    vae.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    vae.decoder.train(), vae.post_quant_conv.train()
    scaling = vae.config.scaling_factor
    mine: list = []
    bar = tqdm(range(start, steps), desc="t2i: fine-tune VAE decoder", unit="step", initial=start, total=steps)
    for step in bar:
        idx = rng.integers(0, len(images_u8), batch_size)
        x = _to_unit(images_u8[idx])
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, lr, min(100, steps // 10), steps)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            rec = vae.decode(latents[idx] / scaling).sample
        mse = F.mse_loss(rec.float(), x)
        loss = mse + F.l1_loss(rec.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(mse=f"{mse.item():.4f}")
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            mine.append({"phase": "decoder", "step": step + 1, "mse": round(mse.item(), 5)})
            tqdm.write(json.dumps(mine[-1]))
            _save_ckpt(ckpt, {"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                              "log": [e for e in log if e.get("phase") == "decoder"] + mine,
                              "rng": rng.bit_generator.__getstate__()})
    log.extend(mine)
    vae.eval().requires_grad_(False)


@torch.no_grad()
def _encode_text(text_encoder, tokenizer, captions: list[str]) -> torch.Tensor:
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids).last_hidden_state


def train_unet(unet, latents: torch.Tensor, scenes: list[Scene], text_encoder, tokenizer, *, steps: int,
               batch_size: int, lr: float, warmup_steps: int, weight_decay: float, ema_decay: float,
               cond_drop_prob: float, snr_gamma: float, partial_caption_prob: float, bf16: bool,
               rng: np.random.Generator, ckpt: Path, ckpt_every: int, log: list, restarts: tuple[int, ...] = ()):
    """Epsilon-prediction DDPM training with min-SNR weights and caption dropout; returns the EMA UNet.

    At each step in ``restarts`` training goes on from the EMA weights with a fresh optimiser and a new
    learning-rate cycle, so a model can be trained further without undoing its finished cosine schedule."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    alphas = sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    weight = torch.clamp(snr, max=snr_gamma) / snr if snr_gamma > 0 else torch.ones_like(snr)
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=weight_decay)
    start = 0
    if ckpt.is_file():
        st = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(st["unet"]), ema.load_state_dict(st["ema"]), opt.load_state_dict(st["opt"])
        rng.bit_generator.__setstate__(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        start = st["step"]
        log[:] = [e for e in log if e.get("phase") != "unet"] + [e for e in st["log"] if e.get("phase") == "unet"]
    empty = _encode_text(text_encoder, tokenizer, [""])
    unet.train()
    t0, losses = time.time(), []
    bar = tqdm(range(start, steps), desc="t2i: train UNet", unit="step", initial=start, total=steps)
    for step in bar:
        if step in restarts:  # after a resume at this step too: the checkpoint holds the state before the restart
            unet.load_state_dict(ema.state_dict())
            opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=weight_decay)
        idx = rng.integers(0, len(latents), batch_size)
        z0 = latents[idx]
        flip = torch.from_numpy(rng.random(batch_size) < 0.5)  # a flipped scene fits the same caption
        z0[flip] = z0[flip].flip(-1)
        cond = _encode_text(text_encoder, tokenizer, [caption_scene(scenes[i], rng, partial_caption_prob) for i in idx])
        drop = torch.from_numpy(rng.random(batch_size) < cond_drop_prob)
        cond[drop] = empty
        t = torch.from_numpy(rng.integers(0, 1000, batch_size))
        noise = torch.randn_like(z0)
        zt = sched.add_noise(z0, noise, t)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, lr, warmup_steps, steps, restarts)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = unet(zt, t, encoder_hidden_states=cond).sample
        per = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per * weight[t]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - d)
        losses.append(per.mean().item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if (step + 1) % ckpt_every == 0 or step + 1 == steps:
            log.append({"phase": "unet", "step": step + 1, "eps_mse": round(float(np.mean(losses[-ckpt_every:])), 5)})
            tqdm.write(json.dumps({**log[-1], "minutes_this_run": round((time.time() - t0) / 60, 2)}))
            _save_ckpt(ckpt, {"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                              "step": step + 1, "log": log, "rng": rng.bit_generator.__getstate__(),
                              "torch_rng": torch.get_rng_state()})
    return ema.eval()


def sample_grid(images: list, captions: list[str], path: str | Path, cols: int = 4, cell: int = 128) -> None:
    """A PNG grid of images, each with its caption written under it."""
    from PIL import Image, ImageDraw

    rows = math.ceil(len(images) / cols)
    text_h = 44
    grid = Image.new("RGB", (cols * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (im, cap) in enumerate(zip(images, captions)):
        x, y = (i % cols) * cell, (i // cols) * (cell + text_h)
        grid.paste(im.convert("RGB").resize((cell, cell), Image.NEAREST), (x, y))
        draw.multiline_text((x + 2, y + cell + 1), "\n".join(textwrap.wrap(cap, 24)[:4]), fill="black")
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")


def heldout_scenes(seed: int, n: int) -> tuple[list[Scene], np.random.Generator]:
    rng = np.random.default_rng([seed, _EVAL_STREAM])
    return [sample_scene(rng) for _ in range(n)], rng


@torch.no_grad()
def synthesize(pipe, captions: list[str], *, steps: int, guidance_scale: float, seed: int,
               batch_size: int = 50, desc: str = "synthesise") -> list:
    """PIL images for ``captions`` (one each), seeded per batch."""
    out = []
    for i in tqdm(range(0, len(captions), batch_size), desc=desc, unit="batch"):
        g = torch.Generator().manual_seed(seed * 100003 + i)
        out += pipe(captions[i:i + batch_size], num_inference_steps=steps, guidance_scale=guidance_scale,
                    generator=g).images
    return out


def pretrain_t2i(scenes: list[Scene], out_dir: str | Path, log_path: str | Path, grid_path: str | Path,
                 cfg) -> dict:
    """Train the tinyworld text-to-image model (VAE, decoder fine-tune, UNet) and save it as a
    StableDiffusionPipeline folder at ``out_dir``; ``cfg``: the ``t2i_pretrain`` params section
    (:class:`mlr_core.config.T2IPretrainParams`, or anything with its fields). Resumes from the checkpoints in
    ``<out_dir>.partial``; writes the training log and held-out figures to ``log_path``, a sample grid to
    ``grid_path``, and returns that summary."""
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".partial")  # checkpoints; gitignored; removed on success
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    t_start = time.time()
    scenes = list(scenes)[:cfg.n_scenes]

    tokenizer = build_clip_tokenizer(work / "tokenizer_src")
    text_encoder = convert_open_clip_text(load_open_clip_state(cfg.arch, cfg.clip_checkpoint), cfg.arch)
    if tokenizer.model_max_length != text_encoder.config.max_position_embeddings:
        tokenizer = build_clip_tokenizer(work / "tokenizer_src", text_encoder.config.max_position_embeddings)

    down = len(cfg.vae_channels) - 1
    latent_size = cfg.image_size // 2 ** down
    vae = build_vae(channels=tuple(cfg.vae_channels), latent_channels=cfg.latent_channels,
                    norm_groups=cfg.vae_norm_groups,
                    sample_size=cfg.image_size)
    log: list = []
    images = None
    lat_path = work / "latents.pt"
    if lat_path.is_file():
        st = torch.load(lat_path, weights_only=False)
        vae.load_state_dict(st["vae"])
        latents, scaling, log = st["latents"], st["scaling_factor"], st["log"]
        vae.eval().requires_grad_(False)
    else:
        images = render_batch(scenes, cfg.image_size, "t2i: render pretrain scenes")
        train_vae(vae, images, steps=cfg.vae_steps, batch_size=cfg.vae_batch_size, lr=cfg.vae_lr,
                  kl_weight=cfg.kl_weight,
                  bf16=cfg.bf16, rng=np.random.default_rng([cfg.seed, 200]), ckpt=work / "vae.pt",
                  ckpt_every=cfg.ckpt_every, log=log)
        raw = encode_latents(vae, images)
        scaling = float(1.0 / raw.std())
        latents = raw * scaling
        with torch.no_grad():
            rec = vae.decode(raw[:256]).sample.float()
        log.append({"phase": "vae_done", "recon_mse_first256": round(F.mse_loss(rec, _to_unit(images[:256])).item(), 5),
                    "scaling_factor": round(scaling, 5)})
        tqdm.write(json.dumps(log[-1]))
        _save_ckpt(lat_path, {"vae": vae.state_dict(), "latents": latents, "scaling_factor": scaling, "log": log})
    vae.register_to_config(scaling_factor=scaling)
    if cfg.decoder_steps:
        dec = work / "decoder.pt"
        if images is None and not (dec.is_file() and torch.load(dec, weights_only=False)["step"] >= cfg.decoder_steps):
            images = render_batch(scenes, cfg.image_size, "t2i: render pretrain scenes")
        finetune_decoder(vae, latents, images, steps=cfg.decoder_steps, batch_size=cfg.decoder_batch_size,
                         lr=cfg.decoder_lr, bf16=cfg.bf16, rng=np.random.default_rng([cfg.seed, 250]), ckpt=dec,
                         ckpt_every=cfg.ckpt_every, log=log)
    del images
    t_vae = time.time()

    unet = build_unet(sample_size=latent_size, latent_channels=cfg.latent_channels, channels=tuple(cfg.unet_channels),
                      cross_attn=tuple(cfg.unet_cross_attn), layers_per_block=cfg.unet_layers_per_block,
                      cross_attention_dim=text_encoder.config.hidden_size, head_dim=cfg.unet_head_dim,
                      norm_groups=cfg.unet_norm_groups)
    ema = train_unet(unet, latents, scenes, text_encoder, tokenizer, steps=cfg.steps, batch_size=cfg.batch_size,
                     lr=cfg.lr,
                     warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, ema_decay=cfg.ema_decay,
                     cond_drop_prob=cfg.cond_drop_prob, snr_gamma=cfg.snr_gamma,
                     partial_caption_prob=cfg.partial_caption_prob,
                     bf16=cfg.bf16, rng=np.random.default_rng([cfg.seed, 300]), ckpt=work / "unet.pt",
                     ckpt_every=cfg.ckpt_every, log=log, restarts=tuple(cfg.unet_restarts))
    train_minutes = (time.time() - t_start) / 60

    pipe = assemble_pipeline(tokenizer, text_encoder, vae, ema, build_scheduler(cfg.scheduler))
    with atomic_dir(out_dir) as tmp:
        save_pipeline(pipe, tmp, fp16=True)
    size_mb = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()) / 1e6

    # Figures from the shipped folder itself (round trip), on held-out scenes of a separate stream.
    pipe = load_t2i(out_dir, device="cpu", dtype="fp32")
    ev_scenes, ev_rng = heldout_scenes(cfg.seed, cfg.n_eval)
    captions = [caption_scene(s, ev_rng) for s in ev_scenes]
    t0 = time.time()
    imgs = synthesize(pipe, captions, steps=cfg.sample_steps, guidance_scale=cfg.guidance_scale, seed=cfg.seed,
                      desc="t2i: held-out samples")
    ips = len(imgs) / (time.time() - t0)
    sample_grid(imgs[:cfg.n_grid], captions[:cfg.n_grid], grid_path)
    import open_clip

    clip = open_clip.create_model(cfg.arch, pretrained=cfg.clip_checkpoint).eval()
    clip_size = clip.visual.image_size if isinstance(clip.visual.image_size, int) else clip.visual.image_size[0]
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    synth = torch.stack([torch.from_numpy(np.array(im.convert("RGB").resize((clip_size, clip_size)))).permute(2, 0, 1) for im in imgs])
    real = render_batch(ev_scenes, clip_size, "t2i: render held-out scenes")
    targets = np.zeros((cfg.n_eval, len(CLASSES)), dtype=np.int64)
    for i, s in enumerate(ev_scenes):
        targets[i, s.labels] = 1
    tok = open_clip.get_tokenizer(cfg.arch)
    zs_synth = zero_shot_map(clip, tok, synth, targets, mean, std)
    zs_real = zero_shot_map(clip, tok, real, targets, mean, std)
    summary = {
        "arch": cfg.arch, "image_size": cfg.image_size, "latent": [cfg.latent_channels, latent_size, latent_size],
        "params_millions": {"vae": round(sum(p.numel() for p in vae.parameters()) / 1e6, 3),
                            "unet": round(sum(p.numel() for p in ema.parameters()) / 1e6, 3),
                            "text_encoder": round(sum(p.numel() for p in text_encoder.parameters()) / 1e6, 3)},
        "vae_steps": cfg.vae_steps, "decoder_steps": cfg.decoder_steps, "unet_steps": cfg.steps,
        "unet_restarts": list(cfg.unet_restarts), "folder_mb": round(size_mb, 2),
        "sampling": {"steps": cfg.sample_steps, "guidance_scale": cfg.guidance_scale, "scheduler": cfg.scheduler,
                     "batch_size": 50},
        "heldout_zero_shot_mAP": {"synthetic": round(zs_synth, 2), "real": round(zs_real, 2),
                                  "ratio": round(zs_synth / zs_real, 3), "n": cfg.n_eval},
        "curve": log,
    }
    atomic_write_json(log_path, summary)  # timings only on the console: the log is the same on every machine
    print(f"pretrain_t2i: {train_minutes:.1f} minutes of training (VAE {(t_vae - t_start) / 60:.1f}), "
          f"sampling {ips:.2f} images/s")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return summary
