"""DualCoOp (Sun et al., NeurIPS 2022): positive and negative learnable prompts per class, class-specific
region aggregation, trained with the asymmetric loss on partial (or seen-only) labels.

Prompts: "X X ... X {class}." with a positive context and a negative context (``n_ctx`` tokens each, class
specific for partial labels, one shared pair of 64 tokens for zero-shot) through the frozen text tower give
t+_c and t-_c. With unit-normalised dense image features d_ij (the per-location attention-pool projection of
the cached feature map, as in the reference for RN backbones):

    r+_cj = region_scale * cos(d_ij, t+_c),   r-_cj = region_scale * cos(d_ij, t-_c)
    w_cj  = softmax_j(r+_cj)                  (class-specific weights, shared by the negative branch)
    z+_c  = logit_scale * sum_j w_cj r+_cj,   z-_c = logit_scale * sum_j w_cj r-_cj
    p_c   = softmax(z-_c, z+_c)[+] = sigmoid(z+_c - z-_c)

region_scale = 20 and logit_scale = 5 in the reference. Loss: asymmetric loss on p (gamma+ 1, gamma- 2,
clip 0.05), unknown labels (-1) ignored. The ranking score written for evaluation / ensembles is
z+ - z- (the logit of p, free of the saturation ties of p itself).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mlr_core.io import load_learned, save_learned
from mlr_core.losses import asymmetric_loss
from mlr_core.models.features import PromptTextEncoder


@dataclass(frozen=True)
class DualCoOpConfig:
    n_ctx: int = 16
    class_specific: bool = True
    region_scale: float = 20.0
    logit_scale: float = 5.0


def dual_region_logits(dense: torch.Tensor, t_neg: torch.Tensor, t_pos: torch.Tensor, region_scale: float,
                       logit_scale: float) -> torch.Tensor:
    """Class-specific region feature aggregation: (B, J, D) dense, (C, D) negative / positive class features
    -> (B, 2, C) logits, index 0 negative, 1 positive. Softmax weights over regions come from the positive
    region logits and are shared with the negative ones."""
    d = F.normalize(dense.float(), dim=-1)
    r_pos = region_scale * torch.einsum("bjd,cd->bcj", d, F.normalize(t_pos.float(), dim=-1))
    r_neg = region_scale * torch.einsum("bjd,cd->bcj", d, F.normalize(t_neg.float(), dim=-1))
    w = torch.softmax(r_pos, dim=-1)
    return logit_scale * torch.stack([(w * r_neg).sum(-1), (w * r_pos).sum(-1)], dim=1)


def dual_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B, 2, C) (negative, positive) logits -> (B, C) probability of the positive."""
    return torch.softmax(logits, dim=1)[:, 1]


class DualCoOpScorer:
    needs_dense = True

    def __init__(self, t_neg: torch.Tensor, t_pos: torch.Tensor, cfg: DualCoOpConfig):
        self.t_neg, self.t_pos, self.cfg = t_neg.float(), t_pos.float(), cfg

    def __call__(self, image_global, dense, mask=None):
        z = dual_region_logits(dense, self.t_neg, self.t_pos, self.cfg.region_scale, self.cfg.logit_scale)
        return z[:, 1] - z[:, 0], dual_probabilities(z)

    def export(self):
        return {"t_neg": self.t_neg, "t_pos": self.t_pos}, asdict(self.cfg)

    @classmethod
    def from_export(cls, tensors, config, clip=None) -> "DualCoOpScorer":
        return cls(tensors["t_neg"], tensors["t_pos"], DualCoOpConfig(**config))


class DualCoOp(torch.nn.Module):
    """The learnable positive / negative contexts and the frozen text tower that makes class features."""

    def __init__(self, clip, classnames: list[str], cfg: DualCoOpConfig, seed: int = 0):
        super().__init__()
        self.cfg, self.classnames = cfg, list(classnames)
        self.encoder = PromptTextEncoder(clip.model, clip.tokenizer, self.classnames, cfg.n_ctx)
        width = self.encoder.token_embeds.shape[-1]
        gen = torch.Generator().manual_seed(seed)
        shape = (len(self.classnames), cfg.n_ctx, width) if cfg.class_specific else (cfg.n_ctx, width)
        self.ctx_pos = torch.nn.Parameter(torch.randn(*shape, generator=gen) * 0.02)
        self.ctx_neg = torch.nn.Parameter(torch.randn(*shape, generator=gen) * 0.02)

    def class_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, D) negative and positive class features."""
        return self.encoder(self.ctx_neg), self.encoder(self.ctx_pos)

    def logits(self, dense: torch.Tensor) -> torch.Tensor:
        t_neg, t_pos = self.class_features()
        return dual_region_logits(dense, t_neg, t_pos, self.cfg.region_scale, self.cfg.logit_scale)

    def loss(self, batch: dict, gamma_pos: float, gamma_neg: float, clip: float) -> torch.Tensor:
        """ASL on the (negative, positive) softmax; ``batch``: ``dense`` (B, J, D), ``labels`` (B, C) with -1."""
        return asymmetric_loss(dual_probabilities(self.logits(batch["dense"])), batch["labels"], gamma_pos,
                               gamma_neg, clip)

    def scorer(self) -> DualCoOpScorer:
        with torch.no_grad():
            t_neg, t_pos = self.class_features()
        return DualCoOpScorer(t_neg.cpu(), t_pos.cpu(), self.cfg)

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        save_learned(path, {"ctx_pos": self.ctx_pos, "ctx_neg": self.ctx_neg}, classnames=self.classnames,
                     config=asdict(self.cfg), extra=extra)

    @classmethod
    def load(cls, path: str | Path, clip, classnames: list[str] | None = None) -> "DualCoOp":
        """Load trained contexts; ``classnames`` (shared contexts only) scores other classes than trained on."""
        tensors, meta = load_learned(path)
        cfg = DualCoOpConfig(**meta["config"])
        if classnames is not None and cfg.class_specific and list(classnames) != meta["classnames"]:
            raise ValueError(f"{path}: class-specific contexts cannot score other classes")
        model = cls(clip, classnames or meta["classnames"], cfg)
        with torch.no_grad():
            model.ctx_pos.copy_(tensors["ctx_pos"])
            model.ctx_neg.copy_(tensors["ctx_neg"])
        return model


def train_dualcoop(clip, classes: list[str], train: dict, val: dict, *, run, p, training, seed: int, evaluate_val):
    """Fit DualCoOp on the budget ``train`` tensors (``dense``, ``labels``); ``p``: the dualcoop params.

    Zero-shot runs (``run.kind == "zsl"``) use shared contexts of ``zeroshot_n_ctx`` tokens; their unseen
    labels are -1 in the budget, so the unseen classes never contribute to the loss. Returns (model, FitResult),
    the model at its best validation mAP."""
    from mlr_core.train import OptimConfig, fit

    zsl = run.kind == "zsl"
    cfg = DualCoOpConfig(n_ctx=p.zeroshot_n_ctx if zsl else p.n_ctx, class_specific=False if zsl else p.class_specific,
                         region_scale=p.region_scale, logit_scale=p.logit_scale)
    torch.manual_seed(seed)
    model = DualCoOp(clip, classes, cfg, seed=seed)
    asl = p.asl
    result = fit(model, train, lambda b: model.loss(b, asl.gamma_pos, asl.gamma_neg, asl.clip),
                 OptimConfig.from_params(p, training), seed=seed, desc=f"train dualcoop {run.name}",
                 validate=lambda: evaluate_val(model.scorer()), select="val_mAP")
    return model, result


def build_scorer(method: str, clip, classes: list[str], params, artifact: Path):
    """A trained DualCoOp run (its test-time scoring has no params)."""
    from mlr_core.io import read_learned_meta
    from mlr_core.methods.registry import check_artifact

    check_artifact(artifact, read_learned_meta(artifact), classes, clip)
    return DualCoOp.load(artifact, clip).scorer()
