"""TaI / TaI-DPT (Guo et al., CVPR 2023): prompts for a multi-label image classifier learned from text alone.

Captions stand in for images: a caption's EOT feature plays the image's global feature and its token
features play the image regions (both from the frozen text tower, cached). Learnable contexts
("X X ... X {class}.", ``n_ctx`` tokens, shared or class-specific) go through the frozen text tower to
class features; TaI learns one global context, TaI-DPT a global and a local one (double-grained
prompts). Training minimises the ranking loss on the global scores (+ the local ones for DPT):

    s_g[i, c] = scale * cos(g_i, t^g_c)
    s_l[i, c] = sum_j softmax_j(T_text * cos(x_ij, t^l_c)) * scale * cos(x_ij, t^l_c)   (valid tokens j)
    L = ranking(s_g, y) + ranking(s_l, y)

At test time the same class features score image features: global from the attention pool, local over the
image regions with ``T_image``, final = (1 - w) * s_g + w * s_l (w = 0.5). The trained contexts are saved
with the class names (safetensors), so evaluation, ensembles and users' scripts can load them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mlr_core.io import load_learned, save_learned
from mlr_core.losses import ranking_loss
from mlr_core.models.features import PromptTextEncoder
from mlr_core.scores import ClassScorer, global_logits, local_logits


@dataclass(frozen=True)
class PromptConfig:
    n_ctx: int = 16
    class_specific: bool = False
    init: str | None = None  # e.g. "a photo of a" (then n_ctx must equal its token count); None = N(0, 0.02)
    use_local: bool = True  # False = TaI (global prompt only)


class DoubleGrainedPrompts(torch.nn.Module):
    """The learnable global (and local) contexts and the frozen text tower that turns them into class features.

    A subclass changes the context layout by overriding :meth:`make_context` (and ``config_class``): the
    data-free method's hierarchical contexts are modules whose ``forward()`` returns (C, n_ctx, width).
    """

    config_class = PromptConfig

    def __init__(self, clip, classnames: list[str], cfg, seed: int = 0):
        super().__init__()
        self.cfg, self.classnames = cfg, list(classnames)
        self.encoder = PromptTextEncoder(clip.model, clip.tokenizer, self.classnames, cfg.n_ctx)
        gen = torch.Generator().manual_seed(seed)
        self.ctx_global = self.make_context(clip, gen)
        self.ctx_local = self.make_context(clip, gen) if cfg.use_local else None

    def make_context(self, clip, gen: torch.Generator) -> torch.nn.Parameter | torch.nn.Module:
        """One learnable context: (n_ctx, width) shared or (C, n_ctx, width) class-specific, N(0, 0.02) or
        initialised from ``cfg.init``'s token embeddings."""
        cfg = self.cfg
        if cfg.init:
            ctx = PromptTextEncoder.context_from_text(clip.model, clip.tokenizer, cfg.init).float().cpu()
            if ctx.shape[0] != cfg.n_ctx:
                raise ValueError(f"n_ctx={cfg.n_ctx} but init {cfg.init!r} has {ctx.shape[0]} tokens; "
                                 f"set n_ctx to {ctx.shape[0]} or init to null")
        else:
            ctx = torch.randn(cfg.n_ctx, self.encoder.width, generator=gen) * 0.02
        if cfg.class_specific:
            ctx = ctx.expand(len(self.classnames), -1, -1).clone()
        return torch.nn.Parameter(ctx)

    @staticmethod
    def _context(ctx) -> torch.Tensor:
        return ctx() if isinstance(ctx, torch.nn.Module) else ctx

    def class_features(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(C, D) global and local class features (unnormalised)."""
        local = self.encoder(self._context(self.ctx_local)) if self.ctx_local is not None else None
        return self.encoder(self._context(self.ctx_global)), local

    def text_loss(self, batch: dict, scale: float, text_temperature: float, margin: float = 1.0,
                  features: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> torch.Tensor:
        """Ranking loss on caption features: ``batch`` holds ``global`` (B, D), ``tokens`` (B, L, D),
        ``mask`` (B, L) and ``labels`` (B, C). ``features``: this step's :meth:`class_features`, when the
        caller needs them too (they cost a text-tower pass)."""
        t_global, t_local = features if features is not None else self.class_features()
        loss = ranking_loss(global_logits(batch["global"], t_global, scale), batch["labels"], margin)
        if t_local is not None:
            s_local = local_logits(batch["tokens"], t_local, scale, text_temperature, batch["mask"])
            loss = loss + ranking_loss(s_local, batch["labels"], margin)
        return loss

    def scorer(self, *, scale: float, image_temperature: float, local_weight: float,
               probability_scale: float) -> ClassScorer:
        with torch.no_grad():
            t_global, t_local = self.class_features()
        return ClassScorer(t_global.cpu(), None if t_local is None else t_local.cpu(), scale=scale,
                           local_temperature=image_temperature, local_weight=local_weight,
                           probability_scale=probability_scale)

    # ---- the saved artifact: the learned tensors + what is needed to rebuild the prompts ----
    def save(self, path: str | Path, extra: dict | None = None) -> None:
        save_learned(path, dict(self.named_parameters()), classnames=self.classnames, config=self.cfg.__dict__,
                     extra=extra)

    @classmethod
    def load(cls, path: str | Path, clip) -> tuple["DoubleGrainedPrompts", dict]:
        tensors, meta = load_learned(path)
        prompts = cls(clip, meta["classnames"], cls.config_class(**meta["config"]))
        prompts.load_state_dict(tensors)
        return prompts, meta


def load_caption_features(path: str | Path, fingerprint: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The cached caption features as training tensors (fp32) and the class names."""
    import numpy as np

    from mlr_core.cache import FeatureCache

    cache = FeatureCache(path, expect_fingerprint=fingerprint)
    if not cache.is_text:
        raise ValueError(f"{path}: not a text feature cache")
    full = cache.read(("global", "dense"))
    return {"global": torch.from_numpy(full.global_.astype(np.float32)),
            "tokens": torch.from_numpy(full.dense.astype(np.float32)),
            "mask": torch.from_numpy(full.mask),
            "labels": torch.from_numpy(full.labels.astype(np.int64))}, cache.classes


def split_heldout(tensors: dict[str, torch.Tensor], fraction: float, seed: int):
    """(train, held-out) rows of the caption tensors: a seeded ``fraction`` is held out."""
    n = len(tensors["labels"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_held = int(round(fraction * n))
    return {k: v[order[n_held:]] for k, v in tensors.items()}, {k: v[order[:n_held]] for k, v in tensors.items()}


def heldout_log(prompts: DoubleGrainedPrompts, held: dict, loss_fn, scale: float, text_temperature: float) -> dict:
    """The validation signal on held-out text: its loss and its text-as-image mAP (``heldout_text_mAP``, what
    the kept weights are chosen on)."""
    from mlr_core.metrics import multilabel_metrics

    if not len(held["labels"]):
        return {}
    t_global, t_local = prompts.class_features()
    scores = global_logits(held["global"], t_global, scale)
    if t_local is not None:
        scores = 0.5 * scores + 0.5 * local_logits(held["tokens"], t_local, scale, text_temperature, held["mask"])
    return {"heldout_loss": round(loss_fn(held).item(), 5),
            "heldout_text_mAP": round(multilabel_metrics(scores.numpy(), held["labels"].numpy(), top_k=())["mAP"], 3)}


def train_tai_dpt(clip, caption_features: str | Path, out_path: str | Path, *, variant: str, n_ctx: int,
                  class_specific: bool, init: str | None, optim, margin: float, scale: float,
                  text_temperature: float, heldout_fraction: float, seed: int):
    """Fit TaI (``variant="tai"``) or TaI-DPT on cached caption features; save the prompts; return the
    :class:`mlr_core.train.FitResult`.

    A seeded ``heldout_fraction`` of the captions is kept out of training: the validation signal (its
    text-as-image mAP), on which the kept weights are chosen (the budget rule, :mod:`mlr_core.train`).
    """
    from mlr_core.train import fit

    tensors, classes = load_caption_features(caption_features, clip.fingerprint)
    train, held = split_heldout(tensors, heldout_fraction, seed)
    torch.manual_seed(seed)
    prompts = DoubleGrainedPrompts(clip, classes, PromptConfig(n_ctx, class_specific, init, variant == "tai_dpt"),
                                   seed=seed)

    def loss_fn(batch):
        return prompts.text_loss(batch, scale, text_temperature, margin)

    result = fit(prompts, train, loss_fn, optim, seed=seed, desc=f"train {variant} (seed {seed})",
                 validate=lambda: heldout_log(prompts, held, loss_fn, scale, text_temperature),
                 select="heldout_text_mAP")
    prompts.save(out_path, extra={"variant": variant, "model_weights": clip.weights_id, "seed": seed,
                                  "training": result.record()})
    return result


def train_runs(variant: str, clip, params, *, caption_features: str | Path, out_dir: str | Path = "data/prompts",
               plots_dir: str | Path = "plots") -> dict:
    """Every run of ``tai_dpt.runs`` (seeds) of ``variant`` (tai | tai_dpt) under the ``training`` budget."""
    from mlr_core.seeded_runs import train_seeded_runs
    from mlr_core.train import OptimConfig

    def one(run, p, out_path):
        return train_tai_dpt(clip, caption_features, out_path, variant=variant, n_ctx=p.n_ctx,
                             class_specific=p.class_specific, init=p.init,
                             optim=OptimConfig.from_params(p, params.training), margin=p.margin, scale=p.scale,
                             text_temperature=p.text_temperature, heldout_fraction=p.heldout_fraction, seed=run.seed)

    return train_seeded_runs(variant, params.tai_dpt, {}, one, workers=params.training.workers,
                             device=clip.device, out_dir=out_dir, plots_dir=plots_dir)


def build_scorer(method: str, clip, classes: list[str], params, artifact: Path):
    """The trained TaI (``tai``) / TaI-DPT prompts in ``artifact``, scored with ``tai_dpt.scale``,
    ``image_temperature`` and ``local_weight``."""
    from mlr_core.methods.registry import check_artifact

    prompts, meta = DoubleGrainedPrompts.load(artifact, clip)
    check_artifact(artifact, meta, classes, clip)
    tp = params.tai_dpt
    return prompts.scorer(scale=tp.scale, image_temperature=tp.image_temperature, local_weight=tp.local_weight,
                          probability_scale=float(clip.model.logit_scale.exp().item()))
