"""PVLR (Yan et al., 2024): prompt-driven visual-linguistic representation learning for multi-label recognition.

With X (B, J, D) the dense image features (by default the cached, frozen per-location features of the CLIP
image tower; an ``ft-`` run fine-tunes the image encoder on the images, the paper's setting) and a frozen text
tower:

* KAP (knowledge-aware prompting): hard prompts "This photo contains [CLS]." -> T_hard (C, D) (frozen,
  computed once); label self-attention  T_ka, M_ka = SelfAttn(T_hard).
* CAP (context-aware prompting): ``n_ctx`` = 4 learnable soft tokens "[p1]..[p4] [CLS]." -> T_soft (C, D);
  T'_soft = CrossAttn(T_soft, X);  T_ca, M_ca = SelfAttn(T'_soft)   (per image).
* IFM (interaction and fusion): channel interaction T_ca <- T_ca + MLP([T_ka, T_ca]); knowledge-to-context
  regularisation L_KCR = mean_c (1 - cos(t_ka_c, t_ca_c)); relation aggregation
  T = (alpha M_ka + (1 - alpha) M_ca) T_ca with a learnable alpha (sigmoid of a free parameter, init 0.5).
* DMA (dual-modal attention): T_vs = CrossAttn(T, X) (visual-to-semantic), X_sv = GAP(CrossAttn(X, T))
  (semantic-to-visual).
* Prediction: p_c = sigmoid(<X_sv, T_vs_c> / sqrt(D)) against the input-adaptive label representations.
* Loss: ASL(p, y) (gamma+ 0, gamma- 2) + lambda L_KCR, lambda = 4; AdamW lr 1e-4, cosine; the weights used at
  test are an EMA (decay 0.9997).

Choices the paper leaves open, made here: every attention is a ``torch.nn.MultiheadAttention`` block with a
residual connection and LayerNorm (y = LN(q + Attn(q, kv))), its attention map averaged over heads; the
logit is divided by sqrt(D) (the paper writes the plain dot product); the EMA uses the usual warm-up
decay_t = min(decay, (1 + t) / (10 + t)), so short schedules (tinyworld) do not test the initial weights. When
the image encoder is fine-tuned (``ft-`` runs, its own lr ``finetune_lr``), its BatchNorm statistics stay those of
pretraining (the layers run in eval mode; their affine weights train): a batch of 64 drawn from a few hundred
images would skew them, and the paper does not say.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from mlr_core.io import load_learned, save_learned
from mlr_core.losses import asymmetric_loss, kcr_loss
from mlr_core.models.features import PromptTextEncoder


@dataclass(frozen=True)
class PvlrConfig:
    hard_prompt: str = "This photo contains {}."
    n_ctx: int = 4
    num_heads: int = 4
    finetune: bool = False  # the image encoder is a trained submodule (``visual``) and the model scores pixels


class AttnBlock(nn.Module):
    """y = LN(q + MHA(q, kv, kv)); returns (y, attention map averaged over heads)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = self.attn(q, kv, kv, need_weights=True, average_attn_weights=True)
        return self.norm(q + out), weights


class PVLRHead(nn.Module):
    """Everything of PVLR after the encoders: (B, J, D) dense features + class text features -> logits.

    ``t_hard`` (C, D) is a buffer; ``t_soft`` (C, D) is passed in (it comes from the learnable soft prompt
    through the frozen text tower)."""

    def __init__(self, t_hard: torch.Tensor, heads: int):
        super().__init__()
        C, D = t_hard.shape
        self.register_buffer("t_hard", t_hard.detach().float().clone())
        self.label_attn_ka = AttnBlock(D, heads)
        self.ctx_cross = AttnBlock(D, heads)
        self.label_attn_ca = AttnBlock(D, heads)
        self.interaction = nn.Sequential(nn.Linear(2 * D, D), nn.GELU(), nn.Linear(D, D))
        self.alpha_logit = nn.Parameter(torch.zeros(()))  # alpha = sigmoid(0) = 0.5 at init
        self.v2s = AttnBlock(D, heads)
        self.s2v = AttnBlock(D, heads)
        self.dim = D

    @property
    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.alpha_logit)

    def forward(self, dense: torch.Tensor, t_soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logits (B, C), KCR loss (scalar))."""
        B = dense.shape[0]
        x = dense.float()
        # KAP: label self-attention over the hard-prompt embeddings (image independent)
        t_ka, m_ka = self.label_attn_ka(self.t_hard[None], self.t_hard[None])  # (1, C, D), (1, C, C)
        # CAP: soft-prompt embeddings conditioned on the image, then label self-attention
        t_soft = t_soft.float()[None].expand(B, -1, -1)
        t_soft_x, _ = self.ctx_cross(t_soft, x)
        t_ca, m_ca = self.label_attn_ca(t_soft_x, t_soft_x)  # (B, C, D), (B, C, C)
        # IFM: channel interaction, KCR, relation aggregation
        t_ka_b = t_ka.expand(B, -1, -1)
        t_ca = t_ca + self.interaction(torch.cat([t_ka_b, t_ca], dim=-1))
        kcr = kcr_loss(t_ka_b, t_ca)
        t = (self.alpha * m_ka + (1 - self.alpha) * m_ca) @ t_ca  # (B, C, D)
        # DMA: both directions
        t_vs, _ = self.v2s(t, x)  # (B, C, D)
        x_sv, _ = self.s2v(x, t)  # (B, J, D)
        x_sv = x_sv.mean(dim=1)  # GAP
        logits = torch.einsum("bd,bcd->bc", x_sv, t_vs) / math.sqrt(self.dim)
        return logits, kcr


class PVLR(nn.Module):
    """Soft prompt (through the frozen text tower) + :class:`PVLRHead`."""

    def __init__(self, clip, classnames: list[str], cfg: PvlrConfig, seed: int = 0):
        super().__init__()
        from mlr_core.models.features import encode_text_features

        self.cfg, self.classnames = cfg, list(classnames)
        torch.manual_seed(seed)
        dev = next(clip.model.parameters()).device
        with torch.no_grad():
            tokens = clip.tokenizer([cfg.hard_prompt.format(c) for c in self.classnames]).to(dev)
            t_hard = encode_text_features(clip.model, tokens).global_.float().cpu()
        self.encoder = PromptTextEncoder(clip.model, clip.tokenizer, self.classnames, cfg.n_ctx)
        gen = torch.Generator().manual_seed(seed)
        self.ctx = nn.Parameter(torch.randn(cfg.n_ctx, self.encoder.token_embeds.shape[-1], generator=gen) * 0.02)
        self.head = PVLRHead(t_hard, cfg.num_heads)
        # fine-tuning: a copy of the image tower, trained with the rest (the frozen CLIP stays untouched)
        self.visual = copy.deepcopy(clip.model.visual).float().requires_grad_(True) if cfg.finetune else None

    def train(self, mode: bool = True) -> "PVLR":
        super().train(mode)
        if self.visual is not None:
            self.visual.eval()  # BatchNorm statistics of pretraining (module docstring)
        return self

    def forward(self, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(dense, self.encoder(self.ctx).float())

    def image_dense(self, images: torch.Tensor) -> torch.Tensor:
        """(B, J, D) dense features of preprocessed ``images`` from the fine-tuned image tower, in the caller's
        grad mode."""
        from mlr_core.models.features import encode_image_features

        if self.visual is None:
            raise ValueError("this PVLR was trained on cached features (no fine-tuned image encoder): score those")
        return encode_image_features(self.visual, images.float()).dense

    def loss(self, batch: dict, *, gamma_pos: float, gamma_neg: float, clip: float, kcr_weight: float) -> torch.Tensor:
        logits, kcr = self(batch["dense"] if "dense" in batch else self.image_dense(batch["images"]))
        # the paper's L = (1/C) sum_c ASL_c + lambda KCR: the class mean keeps lambda = 4 meaningful
        return (asymmetric_loss(torch.sigmoid(logits), batch["labels"], gamma_pos, gamma_neg, clip, class_mean=True)
                + kcr_weight * kcr)

    def scorer(self) -> "PvlrScorer":
        with torch.no_grad():
            t_soft = self.encoder(self.ctx).float()
        return PvlrScorer(self.eval().head, t_soft, self.visual)

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        save_learned(path, self.state_dict(), classnames=self.classnames, config=asdict(self.cfg), extra=extra)

    @classmethod
    def load(cls, path: str | Path, clip) -> "PVLR":
        tensors, meta = load_learned(path)
        model = cls(clip, meta["classnames"], PvlrConfig(**meta["config"]))
        model.load_state_dict(tensors)
        return model.eval()


class PvlrScorer:
    """Scores cached dense features with the trained head and soft-prompt class features, or (a fine-tuned model:
    ``visual``, its own image tower; ``needs_images``) preprocessed images."""

    needs_dense = True

    def __init__(self, head: PVLRHead, t_soft: torch.Tensor, visual: nn.Module | None = None):
        self.head, self.t_soft, self.visual = head.eval(), t_soft.float(), visual
        self.needs_images = visual is not None

    def __call__(self, image_global, dense, mask=None):
        if self.needs_images:
            raise ValueError("a PVLR with a fine-tuned image encoder scores images (score_images), not cached "
                             "features of the frozen encoder")
        with torch.no_grad():
            logits, _ = self.head(dense, self.t_soft)
        return logits, torch.sigmoid(logits)

    def score_images(self, images: torch.Tensor, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, probabilities) of (N, 3, H, W) preprocessed images through the fine-tuned encoder."""
        from mlr_core.models.features import encode_image_features

        with torch.no_grad():
            logits = torch.cat([self.head(encode_image_features(self.visual, images[i:i + batch_size].float()).dense,
                                          self.t_soft)[0] for i in range(0, len(images), batch_size)])
        return logits, torch.sigmoid(logits)

    def export(self):
        tensors = {"t_soft": self.t_soft, **{f"head.{k}": v for k, v in self.head.state_dict().items()}}
        if self.visual is not None:
            tensors.update({f"visual.{k}": v for k, v in self.visual.state_dict().items()})
        return tensors, {"num_heads": self.head.label_attn_ka.attn.num_heads, "finetuned": self.visual is not None}

    @classmethod
    def from_export(cls, tensors, config, clip=None) -> "PvlrScorer":
        """``clip``: the frozen CLIP whose image tower a fine-tuned export's weights go into."""
        head = PVLRHead(tensors["head.t_hard"], config["num_heads"])
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        visual = None
        if config["finetuned"]:
            if clip is None:
                raise ValueError("a fine-tuned PVLR export carries its own image tower, built on the backbone's "
                                 "architecture: load it with the backbone (load_classifier(path, clip))")
            visual = copy.deepcopy(clip.model.visual).float()
            visual.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("visual.")})
            visual.eval().requires_grad_(False)
        return cls(head, tensors["t_soft"], visual)


class Ema:
    """EMA of a module's floating-point state, decay_t = min(decay, (1 + t) / (10 + t)) after update t."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        # the frozen CLIP held by plain reference (PromptTextEncoder.clip_model) is shared, not copied
        memo = {id(m.clip_model): m.clip_model for m in module.modules() if hasattr(m, "clip_model")}
        self.shadow = copy.deepcopy(module, memo).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = module.state_dict()
        for k, v in self.shadow.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1 - d)


def train_pvlr(clip, classes: list[str], train: dict, val: dict, *, run, p, training, seed: int, evaluate_val):
    """Fit PVLR on the budget ``train`` tensors (``dense``, or for an ``ft-`` run ``images``; ``labels``); ``p``:
    the pvlr params. Returns
    (model, FitResult); the returned model holds the EMA weights when ``p.ema_decay > 0`` (what is validated,
    selected on and scored)."""
    from mlr_core.train import OptimConfig, fit

    model = PVLR(clip, classes, PvlrConfig(p.hard_prompt, p.n_ctx, p.num_heads, run.finetune), seed=seed)
    ema = Ema(model, p.ema_decay) if p.ema_decay > 0 else None
    asl = p.asl
    scored = ema.shadow if ema is not None else model
    result = fit(model, train, lambda b: model.loss(b, gamma_pos=asl.gamma_pos, gamma_neg=asl.gamma_neg,
                                                     clip=asl.clip, kcr_weight=p.kcr_weight),
                 OptimConfig.from_params(p, training), seed=seed, desc=f"train pvlr {run.name}",
                 validate=lambda: evaluate_val(scored.scorer()), select="val_mAP", keep=scored,
                 on_step=None if ema is None else lambda: ema.update(model),
                 lr_scales={"visual.": p.finetune_lr / p.lr} if run.finetune else None)
    return scored, result


# ---- ft- runs: the pixels of the dataset's images, since a fine-tuned encoder cannot use the frozen cache ----
def image_files(dataset_params, split: str) -> dict[str, Path]:
    """image id -> file of ``split`` in the ``dataset`` params."""
    from mlr_core.data.datasets import load_from_params

    data = load_from_params(dataset_params, splits=(split,))
    return dict(zip(data.image_ids, data.paths))


def budget_images(budget, cache, paths: dict[str, Path], transform) -> dict:
    """The budget's images as pixels: those of the budget the trainval ``cache`` holds (it skipped the unreadable
    ones), in budget order, decoded from ``paths`` (:func:`image_files`) and preprocessed by ``transform``
    (float16), with the budget's labels."""
    import numpy as np

    from mlr_core.budgets import BudgetError, check_budget_classes
    from mlr_core.cache import load_images

    check_budget_classes(budget, cache)
    cached = set(cache.read(()).image_ids)
    keep = [j for j, i in enumerate(budget.image_ids) if i in cached]
    missing = [budget.image_ids[j] for j in keep if budget.image_ids[j] not in paths]
    if missing:
        raise BudgetError(f"{len(missing)} budget images are not among the dataset params' files (e.g. "
                          f"{missing[0]!r}): the dataset params changed since the features stage?")
    return {"images": load_images([paths[budget.image_ids[j]] for j in keep], transform),
            "labels": budget.labels[np.asarray(keep, dtype=np.int64)]}


def images_by_id(dataset_params, split: str, transform):
    """ids -> (N, 3, H, W) preprocessed images of ``split`` (what a fine-tuned PVLR scores)."""
    from mlr_core.cache import load_images

    paths = image_files(dataset_params, split)
    return lambda ids: torch.from_numpy(load_images([paths[i] for i in ids], transform))


def build_scorer(method: str, clip, classes: list[str], params, artifact: Path) -> PvlrScorer:
    """A trained PVLR run (its test-time scoring has no params)."""
    from mlr_core.io import read_learned_meta
    from mlr_core.methods.registry import check_artifact

    check_artifact(artifact, read_learned_meta(artifact), classes, clip)
    return PVLR.load(artifact, clip).scorer()
