"""T2I-PAL (text-to-image generation for prompt-adapter learning): TaI-DPT's double-grained prompts trained
on captions AND on images a text-to-image model synthesised from them, plus a class-prototype adapter shared
by both branches.

Everything trains on cached features (caption features from the text_features stage, synthetic-image
features from the features stage run on the synthesis stage's folder); the frozen text tower runs only for
the prompts. With ``f^g`` a global feature (caption EOT / image attention pool) and ``f_j`` its local
features (caption tokens / image regions), class-specific global and local prompts give class features
``G`` and ``L`` (C, D) and, all vectors unit-normalised (the paper's eqs. 2-6, then one logit scale):

    s_i   = cos(f^g, G_i)                                            (global similarity)
    h_ij  = softmax_j(cos(f_j, L_i) / tau)                           (class-wise heat map)
    s'_i  = sum_j h_ij cos(f_j, L_i)                                 (local similarity)
    H_i   = sum_j h_ij f_j                                           (class-attended local feature)
    q_i   = exp(-beta (1 - cos(H_i, A_i)))                           (affinity to the learnable prototype A_i)
    s~'_i = alpha q_i + s'_i                                         (local score of the prompt-adapter, eq. 6)
    L_*   = ranking(scale * s, y) + ranking(scale * s~', y)     for * in {img, text}
    L     = gamma L_img + (1 - gamma) L_text

The scale multiplies the sum, so ``alpha q`` keeps the paper's weight against the cosine ``s'``. ``A`` (C x D)
is one matrix shared by the image and text branches, initialised with the initial local class embeddings
``L`` (so that q starts as a meaningful affinity; random prototypes give q ~ exp(-beta) for every class).
Controls (:data:`mlr_core.methods.controls.T2I_PAL_CONTROLS`): ``train_on`` images / captions only,
``adapter`` none (alpha q dropped) or global (q of ``f^g`` added to the global score instead of the local
one). At test: ``(1 - w) scale s + w scale s~'`` on the test image features. The validation signal is the
mAP of held-out synthetic images (held-out captions' text-as-image mAP when trained on captions only).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mlr_core.io import load_learned, save_learned
from mlr_core.losses import ranking_loss
from mlr_core.models.features import PromptTextEncoder
from mlr_core.scores import ClassScorer, class_heatmap, global_logits

ADAPTERS = ("local", "global", "none")


@dataclass(frozen=True)
class PalConfig:
    n_ctx: int = 16
    class_specific: bool = True
    adapter: str = "local"  # local | global | none
    alpha: float = 1.0
    beta: float = 3.5
    tau: float = 0.02
    scale: float = 4.0

    def __post_init__(self):
        if self.adapter not in ADAPTERS:
            raise ValueError(f"adapter must be one of {ADAPTERS}, got {self.adapter!r}")


def affinity(features: torch.Tensor, prototypes: torch.Tensor, beta: float) -> torch.Tensor:
    """q = exp(-beta (1 - cos)): (N, C, D) class-wise features (or (N, D) global ones) against (C, D)
    prototypes, class by class -> (N, C)."""
    a = F.normalize(prototypes.float(), dim=-1)
    f = F.normalize(features.float(), dim=-1)
    cos = (f * a).sum(-1) if f.dim() == 3 else f @ a.T
    return torch.exp(-beta * (1 - cos))


def adapted_global_logits(global_: torch.Tensor, text_global: torch.Tensor, prototypes: torch.Tensor | None,
                          cfg: PalConfig) -> torch.Tensor:
    """(N, C) global logits scale * s; with the global-adapter control, scale * (s + alpha q) of the global feature."""
    s = global_logits(global_, text_global, 1.0)
    if prototypes is not None and cfg.adapter == "global":
        s = s + cfg.alpha * affinity(global_, prototypes, cfg.beta)
    return cfg.scale * s


def adapted_local_logits(local: torch.Tensor, mask: torch.Tensor | None, text_local: torch.Tensor,
                         prototypes: torch.Tensor | None, cfg: PalConfig) -> torch.Tensor:
    """(N, C) local logits scale * s~' = scale * (alpha q + s') of (N, J, D) local features (scale * s' without a
    local adapter)."""
    heat, cos = class_heatmap(local, text_local, 1.0 / cfg.tau, mask)
    s = (heat * cos).sum(-1)
    if prototypes is not None and cfg.adapter == "local":
        attended = torch.einsum("ncj,njd->ncd", heat, F.normalize(local.float(), dim=-1))
        s = s + cfg.alpha * affinity(attended, prototypes, cfg.beta)
    return cfg.scale * s


class T2IPal(torch.nn.Module):
    """Class-specific global and local contexts, the frozen text tower that encodes them, and the prototypes A."""

    def __init__(self, clip, classnames: list[str], cfg: PalConfig, seed: int = 0):
        super().__init__()
        self.cfg, self.classnames = cfg, list(classnames)
        self.encoder = PromptTextEncoder(clip.model, clip.tokenizer, self.classnames, cfg.n_ctx)
        width, n_cls = self.encoder.token_embeds.shape[-1], len(self.classnames)
        gen = torch.Generator().manual_seed(seed)
        shape = (n_cls, cfg.n_ctx, width) if cfg.class_specific else (cfg.n_ctx, width)
        self.ctx_global = torch.nn.Parameter(torch.randn(shape, generator=gen) * 0.02)
        self.ctx_local = torch.nn.Parameter(torch.randn(shape, generator=gen) * 0.02)
        with torch.no_grad():  # A starts at the initial local class embeddings L (module docstring)
            init = F.normalize(self.encoder(self.ctx_local).float(), dim=-1)
        self.prototypes = torch.nn.Parameter(init.clone()) if cfg.adapter != "none" else None

    def class_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(self.ctx_global), self.encoder(self.ctx_local)

    def branch_loss(self, batch: dict, class_features, margin: float) -> torch.Tensor:
        """Ranking loss on the global and the adapted local logits of one branch: ``batch`` holds
        ``global`` (B, D), ``local`` (B, J, D), optional ``mask`` (B, J) and ``labels`` (B, C)."""
        t_global, t_local = class_features
        s_global = adapted_global_logits(batch["global"], t_global, self.prototypes, self.cfg)
        s_local = adapted_local_logits(batch["local"], batch.get("mask"), t_local, self.prototypes, self.cfg)
        return ranking_loss(s_global, batch["labels"], margin) + ranking_loss(s_local, batch["labels"], margin)

    def scorer(self, *, local_weight: float, probability_scale: float) -> PalScorer:
        with torch.no_grad():
            t_global, t_local = self.class_features()
        return PalScorer(t_global.cpu(), t_local.cpu(),
                         None if self.prototypes is None else self.prototypes.detach().cpu(), self.cfg,
                         local_weight=local_weight, probability_scale=probability_scale)

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        tensors = {"ctx_global": self.ctx_global, "ctx_local": self.ctx_local}
        if self.prototypes is not None:
            tensors["prototypes"] = self.prototypes
        save_learned(path, tensors, classnames=self.classnames, config=asdict(self.cfg), extra=extra)

    @classmethod
    def load(cls, path: str | Path, clip) -> tuple[T2IPal, dict]:
        tensors, meta = load_learned(path)
        model = cls(clip, meta["classnames"], PalConfig(**meta["config"]))
        with torch.no_grad():
            for name, value in tensors.items():
                getattr(model, name).copy_(value)
        return model, meta


class PalScorer(ClassScorer):
    """The test-time scorer: global and local logits with the prototype adapter, mixed as in TaI-DPT."""

    def __init__(self, text_global, text_local, prototypes, cfg: PalConfig, *, local_weight: float,
                 probability_scale: float):
        super().__init__(text_global, text_local, scale=cfg.scale, local_temperature=1.0 / cfg.tau,
                         local_weight=local_weight, probability_scale=probability_scale)
        self.prototypes, self.cfg = prototypes, cfg

    def global_scores(self, image_global):
        return adapted_global_logits(image_global, self.text_global, self.prototypes, self.cfg)

    def local_scores(self, dense, mask):
        return adapted_local_logits(dense, mask, self.text_local, self.prototypes, self.cfg)

    def export(self):
        tensors = {"text_global": self.text_global, "text_local": self.text_local}
        if self.prototypes is not None:
            tensors["prototypes"] = self.prototypes
        return tensors, {"cfg": asdict(self.cfg), "local_weight": self.local_weight,
                         "probability_scale": self.probability_scale}

    @classmethod
    def from_export(cls, tensors, config, clip=None) -> "PalScorer":
        return cls(tensors["text_global"], tensors["text_local"], tensors.get("prototypes"), PalConfig(**config["cfg"]),
                   local_weight=config["local_weight"], probability_scale=config["probability_scale"])


def load_image_features(path: str | Path, fingerprint: str, classes: list[str]) -> dict[str, torch.Tensor]:
    """The synthetic images' cached features as training tensors (fp32): global, local regions, labels."""
    from mlr_core.cache import FeatureCache

    cache = FeatureCache(path, expect_fingerprint=fingerprint)
    if cache.is_text:
        raise ValueError(f"{path}: a text feature cache, expected image features")
    if cache.classes != list(classes):
        raise ValueError(f"{path}: classes {cache.classes[:5]}... differ from the captions' {list(classes)[:5]}...")
    full = cache.read(("global", "dense"))
    return {"global": torch.from_numpy(full.global_.astype(np.float32)),
            "local": torch.from_numpy(full.dense.astype(np.float32)),
            "labels": torch.from_numpy(full.labels.astype(np.int64))}


def train_t2i_pal(clip, caption_features: str | Path, image_features: str | Path | None, out_path: str | Path, *,
                  cfg: PalConfig, train_on: str, gamma: float, margin: float, optim, heldout_fraction: float,
                  local_weight: float, seed: int, image_fraction: float = 1.0):
    """Fit T2I-PAL on cached caption and synthetic-image features; save it; return the
    :class:`mlr_core.train.FitResult`.

    A seeded ``heldout_fraction`` of the captions and of the synthetic images is held out; the validation
    signal is the held-out images' mAP under the test-time scoring (``local_weight``), or the held-out
    captions' when ``train_on="captions"``. ``train_on="both"``: each step takes ``optim.batch_size`` captions
    and as many synthetic images; ``"images"`` / ``"captions"``: that source alone. ``image_fraction``:
    a seeded part of the training images (mAP against their number; the held-out ones unchanged).
    """
    from mlr_core.methods.tai_dpt import load_caption_features, split_heldout
    from mlr_core.metrics import multilabel_metrics
    from mlr_core.train import fit

    if train_on not in ("both", "images", "captions"):
        raise ValueError(f"train_on must be both, images or captions, got {train_on!r}")
    captions, classes = load_caption_features(caption_features, clip.fingerprint)
    captions = {"global": captions["global"], "local": captions["tokens"], "mask": captions["mask"],
                "labels": captions["labels"]}
    captions, held_captions = split_heldout(captions, heldout_fraction, seed)
    images = held_images = None
    if train_on != "captions":
        if image_features is None:
            raise ValueError("train_on needs synthetic image features")
        images, held_images = split_heldout(load_image_features(image_features, clip.fingerprint, classes),
                                            heldout_fraction, seed)
        # the training images are already a seeded permutation: their first part is a seeded subset
        images = {k: v[:int(round(image_fraction * len(images["labels"])))] for k, v in images.items()}
    torch.manual_seed(seed)
    model = T2IPal(clip, classes, cfg, seed=seed)

    held, signal = (held_captions, "heldout_text_mAP") if images is None else (held_images, "heldout_image_mAP")

    def validate() -> dict:
        scores, _ = model.scorer(local_weight=local_weight, probability_scale=1.0)(
            held["global"], held["local"], held.get("mask"))
        return {signal: round(multilabel_metrics(scores.numpy(), held["labels"].numpy(), top_k=())["mAP"], 3)}

    sources = {"captions": captions, "images": images}
    primary, aux = (captions, images) if train_on == "both" else (sources[train_on], None)

    def loss_fn(batch):
        feats = model.class_features()
        if train_on != "both":
            return model.branch_loss(batch, feats, margin)
        return (gamma * model.branch_loss(batch["aux"], feats, margin)
                + (1 - gamma) * model.branch_loss(batch, feats, margin))

    result = fit(model, primary, loss_fn, optim, seed=seed, desc=f"train t2i_pal (seed {seed})", aux=aux,
                 validate=validate, select=signal)
    model.save(out_path, extra={"train_on": train_on, "gamma": gamma, "model_weights": clip.weights_id,
                                "seed": seed, "n_captions": len(captions["labels"]),
                                "n_images": 0 if images is None else len(images["labels"]),
                                "training": result.record()})
    return result


def train_runs(clip, params, *, caption_features: str | Path, image_features: str | Path,
               out_dir: str | Path = "data/prompts", plots_dir: str | Path = "plots") -> dict:
    """Every run of ``t2i_pal.runs`` (seeds, then the controls) under the ``training`` budget."""
    from mlr_core.methods.controls import T2I_PAL_CONTROLS
    from mlr_core.seeded_runs import train_seeded_runs
    from mlr_core.train import OptimConfig

    def one(run, p, out_path):
        cfg = PalConfig(n_ctx=p.n_ctx, class_specific=p.class_specific, adapter=p.adapter, alpha=p.alpha,
                        beta=p.beta, tau=p.tau, scale=p.scale)
        return train_t2i_pal(clip, caption_features, image_features, out_path, cfg=cfg, train_on=p.train_on,
                             gamma=p.gamma, margin=p.margin, optim=OptimConfig.from_params(p, params.training),
                             heldout_fraction=p.heldout_fraction, local_weight=p.local_weight, seed=run.seed,
                             image_fraction=p.image_fraction)

    return train_seeded_runs("t2i_pal", params.t2i_pal, T2I_PAL_CONTROLS, one, workers=params.training.workers,
                             device=clip.device, out_dir=out_dir, plots_dir=plots_dir)


def build_scorer(method: str, clip, classes: list[str], params, artifact: Path) -> PalScorer:
    """The trained T2I-PAL prompts and prototypes in ``artifact``, mixed with ``t2i_pal.local_weight``."""
    from mlr_core.methods.registry import check_artifact

    model, meta = T2IPal.load(artifact, clip)
    check_artifact(artifact, meta, classes, clip)
    return model.scorer(local_weight=params.t2i_pal.local_weight,
                        probability_scale=float(clip.model.logit_scale.exp().item()))
