"""Data-free hierarchical prompts (Yang et al., "Data-free Multi-label Image Recognition via LLM-powered
Prompt Tuning"): prompts learned from an LLM's sentences alone, no images and no captions.

The prompt of class c is ``[shared | partial-shared level 1 | ... | class-specific] {class}.``:

* shared tokens (``n_shared``) are one set for all classes;
* partial-shared tokens (``n_partial[l]`` at level l) belong to the class's subgroup at that level (the LLM's
  coarse and fine scene subgroups); a class that no subgroup names has its own tokens there (the paper's
  t_{c,a}, t_{c,b});
* class-specific tokens (``n_specific``) are the class's own.

The paper's ablations are layouts of the same tokens: ``shared`` (all tokens shared, CoOp-style),
``class_specific`` (all the class's own), ``hierarchical``. Its "hand-crafted" row is zero-shot CLIP + DPT
(method ``zsclip_dpt``). Training follows TaI-DPT (:mod:`mlr_core.methods.tai_dpt`): sentence features
stand in for images, global and local prompts, ranking loss on both; plus the order loss (eq. 13) that
anchors the learned classes' similarity structure to the hand-crafted prompts':

    L = rank(S^G) + rank(S^L) + lambda_1 * (KL(P_H || P_G) + KL(P_H || P_L)),   lambda_1 = 0.2
    test score = lambda_2 * S^G + (1 - lambda_2) * S^L,                             lambda_2 = 0.65

with lr 0.002 decayed x0.1 after epochs 2 and 5 of 10 (paper Sec. 5.2): here after 20 % and 50 % of the
shared step budget (``training.steps``, :mod:`mlr_core.train`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mlr_core.losses import order_loss
from mlr_core.methods.tai_dpt import DoubleGrainedPrompts, heldout_log, load_caption_features, split_heldout

LAYOUTS = ("hierarchical", "shared", "class_specific")


@dataclass(frozen=True)
class HierarchyConfig:
    """Token counts and, per partial-shared level, each class's group index (-1: no group, own tokens)."""

    layout: str = "hierarchical"
    n_shared: int = 16
    n_partial: tuple[int, ...] = (8, 4)
    n_specific: int = 4
    groups: tuple[tuple[int, ...], ...] = field(default_factory=tuple)  # (levels, C)
    use_local: bool = True

    @property
    def n_ctx(self) -> int:
        return self.n_shared + sum(self.n_partial) + self.n_specific

    def counts(self) -> tuple[int, tuple[int, ...], int]:
        """(shared, partial per level, specific) after the layout: the ablations keep the total."""
        if self.layout == "shared":
            return self.n_ctx, (), 0
        if self.layout == "class_specific":
            return 0, (), self.n_ctx
        if self.layout != "hierarchical":
            raise ValueError(f"datafree.layout must be one of {LAYOUTS}, got {self.layout!r}")
        return self.n_shared, tuple(self.n_partial), self.n_specific


def group_index(subgroups: list[list[str]], classes: list[str]) -> tuple[int, ...]:
    """Each class's group at one level (first group naming it), -1 where none does."""
    index = [-1] * len(classes)
    for g, members in enumerate(subgroups):
        for name in members:
            if name not in classes:
                raise ValueError(f"subgroup member {name!r} is not a class ({classes[:5]}...)")
            c = classes.index(name)
            if index[c] == -1:
                index[c] = g
    return tuple(index)


def load_subgroups(path: str | Path, classes: list[str], levels: int, *, source: str = "llm",
                   n_groups: tuple[int, ...] = (), class_features: np.ndarray | None = None):
    """Per level (coarse, fine) each class's group index, and the source each level came from: the LLM stage's
    subgroups JSON as it is (``source="llm"``), or through :func:`mlr_core.text.hierarchy.resolve_hierarchy`
    (``auto``: the LLM's level where usable, else WordNet's hypernyms, else clusters of ``class_features``;
    ``wordnet``; ``embedding``) with ``n_groups[l]`` groups wanted at level l."""
    from mlr_core.text.hierarchy import LEVEL_NAMES, resolve_hierarchy

    data = json.loads(Path(path).read_text())
    if levels > len(LEVEL_NAMES):
        raise ValueError(f"datafree.n_partial has {levels} levels; the subgroups file has {list(LEVEL_NAMES)}")
    if len(n_groups) < levels:
        raise ValueError(f"datafree.hierarchy_groups needs a group count for each of the {levels} levels")
    groups, used = resolve_hierarchy(classes, source=source, llm_subgroups=data, n_groups=tuple(n_groups[:levels]),
                                     class_features=class_features)
    return tuple(group_index(g, classes) for g in groups), used, groups


class HierarchicalContext(torch.nn.Module):
    """``forward() -> (C, n_ctx, width)``: shared, partial-shared (per level) and class-specific tokens."""

    group_rows: list[torch.Tensor]

    def __init__(self, n_classes: int, width: int, cfg: HierarchyConfig, gen: torch.Generator):
        super().__init__()
        n_shared, n_partial, n_specific = cfg.counts()
        self.n_classes = n_classes

        def init(*shape):
            return torch.nn.Parameter(torch.randn(*shape, generator=gen) * 0.02)

        self.shared = init(n_shared, width) if n_shared else None
        self.partial = torch.nn.ParameterList()
        for level, n in enumerate(n_partial):
            groups = cfg.groups[level] if level < len(cfg.groups) else (-1,) * n_classes
            if len(groups) != n_classes:
                raise ValueError(f"level {level}: {len(groups)} group indices for {n_classes} classes")
            n_groups = max(groups) + 1
            # rows 0..G-1 are the groups' tokens, row G + c is class c's own (used when it has no group)
            rows = torch.tensor([g if g >= 0 else n_groups + c for c, g in enumerate(groups)])
            self.register_buffer(f"rows_{level}", rows, persistent=False)
            self.partial.append(init(n_groups + n_classes, n, width))
        self.specific = init(n_classes, n_specific, width) if n_specific else None

    def forward(self) -> torch.Tensor:
        parts = []
        if self.shared is not None:
            parts.append(self.shared.unsqueeze(0).expand(self.n_classes, -1, -1))
        for level, tokens in enumerate(self.partial):
            parts.append(tokens[getattr(self, f"rows_{level}")])
        if self.specific is not None:
            parts.append(self.specific)
        return torch.cat(parts, dim=1)


class HierarchicalPrompts(DoubleGrainedPrompts):
    """Global and local hierarchical prompts; everything else (class features, ranking loss on text,
    scorer, save/load) is TaI-DPT's."""

    config_class = HierarchyConfig

    def __init__(self, clip, classnames: list[str], cfg: HierarchyConfig, seed: int = 0):
        cfg = HierarchyConfig(**{**cfg.__dict__, "n_partial": tuple(cfg.n_partial),
                                 "groups": tuple(tuple(g) for g in cfg.groups)})
        super().__init__(clip, classnames, cfg, seed)

    def make_context(self, clip, gen: torch.Generator) -> HierarchicalContext:
        return HierarchicalContext(len(self.classnames), self.encoder.width, self.cfg, gen)

    def loss(self, batch: dict, anchor: torch.Tensor | None, *, scale: float, text_temperature: float, margin: float,
             order_weight: float, order_temperature: float) -> torch.Tensor:
        features = self.class_features()
        loss = self.text_loss(batch, scale, text_temperature, margin, features=features)
        if order_weight > 0 and anchor is not None:
            loss = loss + order_weight * sum(order_loss(f, anchor, order_temperature) for f in features if f is not None)
        return loss


def select_kinds(sentences_path: str | Path, n_rows: int, kinds: list[str]) -> np.ndarray:
    """Row indices of the sentences of the given kinds (the feature cache has the sentences' order)."""
    import pyarrow.parquet as pq

    kind = np.asarray(pq.read_table(sentences_path, columns=["kind"]).column("kind").to_pylist())
    if len(kind) != n_rows:
        raise ValueError(f"{sentences_path} has {len(kind)} sentences but the feature cache {n_rows}: "
                         f"re-run the llm_text_features stage")
    keep = np.flatnonzero(np.isin(kind, kinds))
    if not len(keep):
        raise ValueError(f"datafree.kinds {kinds}: no sentence of these kinds in {sentences_path} "
                         f"(it has {sorted(set(kind.tolist()))})")
    return keep


def train_datafree(clip, sentence_features: str | Path, sentences: str | Path, subgroups: str | Path,
                   out_path: str | Path, *, cfg: HierarchyConfig, kinds: list[str], optim, margin: float, scale: float,
                   text_temperature: float, order_weight: float, order_temperature: float, hand_template: str,
                   heldout_fraction: float, seed: int, hierarchy: str = "llm", hierarchy_groups: tuple[int, ...] = (),
                   sentence_fraction: float = 1.0):
    """Fit hierarchical prompts on the LLM sentences' cached features; save them; return the
    :class:`mlr_core.train.FitResult`.

    As in TaI-DPT a seeded ``heldout_fraction`` of the sentences is held out: the validation signal on which
    the kept weights are chosen. ``hierarchy`` / ``hierarchy_groups``: where the subgroups come from
    (:func:`load_subgroups`); the sources used and the groups are recorded in the artifact.
    """
    from mlr_core.methods.zsclip import hand_crafted_text
    from mlr_core.train import fit

    tensors, classes = load_caption_features(sentence_features, clip.fingerprint)
    keep = torch.from_numpy(select_kinds(sentences, len(tensors["labels"]), kinds))
    tensors = {k: v[keep] for k, v in tensors.items()}
    levels = len(cfg.counts()[1])
    index, sources, named = ((), [], [])
    if levels:
        features = hand_crafted_text(clip, classes, hand_template).numpy()
        index, sources, named = load_subgroups(subgroups, classes, levels, source=hierarchy, n_groups=hierarchy_groups,
                                               class_features=features)
    cfg = HierarchyConfig(**{**cfg.__dict__, "groups": index})

    train, held = split_heldout(tensors, heldout_fraction, seed)
    # mAP against the amount of LLM text: a seeded part of the training sentences (their order is already a seeded
    # permutation), the held-out ones unchanged, so every fraction is judged on the same validation signal
    n_train = int(round(sentence_fraction * len(train["labels"])))
    train = {k: v[:n_train] for k, v in train.items()}
    torch.manual_seed(seed)
    prompts = HierarchicalPrompts(clip, classes, cfg, seed=seed)
    anchor = hand_crafted_text(clip, classes, hand_template) if order_weight > 0 else None

    def loss_fn(batch):
        return prompts.loss(batch, anchor, scale=scale, text_temperature=text_temperature, margin=margin,
                            order_weight=order_weight, order_temperature=order_temperature)

    result = fit(prompts, train, loss_fn, optim, seed=seed, desc=f"train datafree ({cfg.layout}, seed {seed})",
                 validate=lambda: heldout_log(prompts, held, loss_fn, scale, text_temperature),
                 select="heldout_text_mAP")
    prompts.save(out_path, extra={"method": "datafree", "model_weights": clip.weights_id, "seed": seed,
                                  "kinds": list(kinds), "n_sentences": len(tensors["labels"]),
                                  "n_train_sentences": n_train,
                                  "hierarchy": {"requested": hierarchy, "sources": list(sources),
                                                "groups": [list(map(list, g)) for g in named]},
                                  "training": result.record()})
    return result


def train_runs(clip, params, *, sentence_features: str | Path, llm_dir: str | Path, out_dir: str | Path = "data/prompts",
               plots_dir: str | Path = "plots") -> dict:
    """Every run of ``datafree.runs`` (seeds, then the layout / order-loss controls) under the ``training``
    budget."""
    from mlr_core.methods.controls import DATAFREE_CONTROLS
    from mlr_core.seeded_runs import train_seeded_runs
    from mlr_core.train import OptimConfig

    def one(run, p, out_path):
        optim = OptimConfig.from_params(p, params.training, schedule="step", milestones=tuple(p.milestones))
        cfg = HierarchyConfig(layout=p.layout, n_shared=p.n_shared, n_partial=tuple(p.n_partial),
                              n_specific=p.n_specific, use_local=p.use_local)
        return train_datafree(clip, sentence_features, Path(llm_dir) / "sentences.parquet",
                              Path(llm_dir) / "subgroups.json", out_path, cfg=cfg, kinds=p.kinds, optim=optim,
                              margin=p.margin, scale=p.scale, text_temperature=p.text_temperature,
                              order_weight=p.order_weight, order_temperature=p.order_temperature,
                              hand_template=p.hand_template, heldout_fraction=p.heldout_fraction, seed=run.seed,
                              hierarchy=p.hierarchy, hierarchy_groups=tuple(p.hierarchy_groups),
                              sentence_fraction=p.sentence_fraction)

    return train_seeded_runs("datafree", params.datafree, DATAFREE_CONTROLS, one, workers=params.training.workers,
                             device=clip.device, out_dir=out_dir, plots_dir=plots_dir)


def build_scorer(method: str, clip, classes: list[str], params, artifact: Path):
    """The trained hierarchical prompts in ``artifact``, scored with ``datafree.scale``, ``image_temperature``
    and ``global_weight``."""
    from mlr_core.methods.registry import check_artifact

    prompts, meta = HierarchicalPrompts.load(artifact, clip)
    check_artifact(artifact, meta, classes, clip)
    dp = params.datafree
    return prompts.scorer(scale=dp.scale, image_temperature=dp.image_temperature, local_weight=1 - dp.global_weight,
                          probability_scale=float(clip.model.logit_scale.exp().item()))
