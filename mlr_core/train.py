"""One training loop over cached features, for every trained method, under one budget rule.

**The budget rule.** Every trained method gets the same number of optimiser steps (``training.steps``) with
the same schedule shape in steps: linear warm-up over ``training.warmup_steps``, then the method's decay
(cosine to 0, or x ``step_gamma`` at fractions of the budget). Every ``training.eval_every`` steps, and at
the last, the method's own validation signal is computed (held-out captions or LLM sentences for the
text-only methods, the validation part of trainval for the image-supervised ones, held-out synthetic images
for T2I-PAL) and the weights kept at the end are those of the best evaluation on it (the earliest on ties).
The test split is never read here. What was spent and chosen is returned (:func:`fit` ``-> FitResult``) and
recorded in each run's artifact and metrics file.

A method supplies its learnable module and a ``loss(batch) -> tensor``; the loop owns seeding, batching
(in-memory tensors, reshuffled on each pass from a seeded generator), the optimiser and schedule, progress
bars and the log.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm import tqdm


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser and schedule of one training run: the method's own optimiser, lr, weight decay and batch
    size (its params section) under the shared budget (the ``training`` params section); see
    :meth:`from_params`."""

    optimizer: str  # sgd (momentum 0.9) | adamw
    lr: float
    weight_decay: float
    batch_size: int
    steps: int
    warmup_steps: int
    eval_every: int
    patience: int | None = None  # stop after this many evaluations without a new best (None: run every step)
    schedule: str = "cosine"  # cosine | step (x step_gamma once each fraction in milestones of the steps is done)
    milestones: tuple[float, ...] = ()
    step_gamma: float = 0.1

    @classmethod
    def from_params(cls, section, training, **overrides) -> "OptimConfig":
        """``optimizer``, ``lr``, ``weight_decay`` and ``batch_size`` of a method's params section under the
        ``training`` section's ``steps``, ``warmup_steps``, ``eval_every`` and ``patience``, plus ``overrides``."""
        return cls(optimizer=section.optimizer, lr=section.lr, weight_decay=section.weight_decay,
                   batch_size=section.batch_size, steps=training.steps, warmup_steps=training.warmup_steps,
                   eval_every=training.eval_every, patience=training.patience, **overrides)


@dataclass
class FitResult:
    """What a run spent and chose: its log (one entry per evaluation) and the record kept in its artifact
    and metrics (:meth:`record`)."""

    log: list[dict]
    cfg: OptimConfig
    signal: str | None            # the validation key selected on (None: no validation data; the last weights)
    selected_step: int
    selected_value: float | None
    samples: int = 0              # training samples drawn (steps x batch size, the last batch of a pass smaller)
    aux_samples: int = 0          # of the second source (T2I-PAL's synthetic images beside captions)
    steps_run: int = 0            # cfg.steps, or fewer when the patience stopped the run
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        c = self.cfg
        out = {"steps": c.steps, "steps_run": self.steps_run, "patience": c.patience, "batch_size": c.batch_size,
               "warmup_steps": c.warmup_steps, "eval_every": c.eval_every, "schedule": c.schedule,
               "optimizer": c.optimizer, "lr": c.lr, "samples": self.samples, "selected_on": self.signal,
               "selected_step": self.selected_step, "selected_value": self.selected_value}
        if self.aux_samples:
            out["aux_samples"] = self.aux_samples
        return {**out, **self.extra}


def make_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {cfg.optimizer!r}")


def warmup_cosine(step: int, warmup: int, total: int, peak: float = 1.0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``peak`` to 0 at ``total``:

    lr(s) = peak * (s + 1) / warmup  for s < warmup,  else  peak / 2 * (1 + cos(pi * (s - warmup) / (total - warmup)))

    The one cosine schedule of the project: :func:`lr_factor` (every method) and the text-to-image pretraining
    (``mlr_core.models.t2i_pretrain``, per warm-restart cycle). (``mlr_core.models.pretrain`` keeps its own
    expression: it rounds differently in the last bit, and it is what the shipped CLIP checkpoint was trained with.)

    Example:
        >>> [round(warmup_cosine(s, warmup=2, total=6), 3) for s in range(6)]
        [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def lr_factor(step: int, cfg: OptimConfig) -> float:
    """The multiplier of the base learning rate at ``step`` (0-based) of ``cfg.steps``: warm-up, then the decay.

    ``schedule="step"``: x ``step_gamma`` once each fraction in ``milestones`` of the budget is done (the
    data-free paper's x0.1 after epochs 2 and 5 of 10 is milestones (0.2, 0.5)).

    Example:
        >>> cfg = OptimConfig("sgd", 1.0, 0.0, 8, steps=10, warmup_steps=0, eval_every=5, schedule="step",
        ...                   milestones=(0.2, 0.5))
        >>> [lr_factor(s, cfg) for s in (0, 1, 2, 4, 5, 9)]
        [1.0, 1.0, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002]
    """
    if step >= cfg.warmup_steps and cfg.schedule == "step":
        return cfg.step_gamma ** sum(step >= round(m * cfg.steps) for m in cfg.milestones)
    if cfg.schedule not in ("cosine", "step"):
        raise ValueError(f"schedule must be 'cosine' or 'step', got {cfg.schedule!r}")
    return warmup_cosine(step, cfg.warmup_steps, cfg.steps)


def fit(module: torch.nn.Module, tensors: dict[str, torch.Tensor], loss_fn: Callable[[dict], torch.Tensor],
        cfg: OptimConfig, *, seed: int, desc: str, validate: Callable[[], dict] | None = None,
        select: str | None = None, keep: torch.nn.Module | None = None, on_step: Callable[[], None] | None = None,
        aux: dict[str, torch.Tensor] | None = None, lr_scales: dict[str, float] | None = None) -> FitResult:
    """Train ``module``'s trainable parameters on ``tensors`` (equal first dimension) for ``cfg.steps`` steps.

    Every ``cfg.eval_every`` steps and at the last, ``validate()`` (under ``no_grad``, in eval mode) returns
    the validation signals; the state of ``keep`` (default ``module``; e.g. an EMA copy that is what gets
    scored) at the best value of ``validate()[select]`` is restored at the end. With ``cfg.patience``, the run
    stops after that many evaluations in a row without a new best (what it would still have run cannot be
    kept unless it beat the best: the stop only saves time, judged on the validation signal alone). ``on_step()`` runs after each
    optimiser step (e.g. an EMA update). ``aux`` is an optional second source (its own first dimension, e.g.
    synthetic images beside captions): each step also draws ``cfg.batch_size`` of its rows from its own seeded
    reshuffles, passed to ``loss_fn`` as ``batch["aux"]``. ``lr_scales``: {parameter-name prefix: multiplier of
    ``cfg.lr``} for parameter groups with their own lr (e.g. a fine-tuned image encoder), under the same schedule.
    """
    n = len(next(iter(tensors.values())))
    if n == 0:
        raise ValueError(f"{desc}: no training samples")
    if cfg.steps < 1 or cfg.eval_every < 1:
        raise ValueError(f"{desc}: training.steps and training.eval_every must be >= 1")
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name, p in module.named_parameters():
        if p.requires_grad:
            scale = next((s for prefix, s in (lr_scales or {}).items() if name.startswith(prefix)), 1.0)
            groups.setdefault(scale, []).append(p)
    if not groups:
        raise ValueError(f"{desc}: the module has no trainable parameters")
    keep = module if keep is None else keep
    opt = make_optimizer([{"params": ps, "lr_scale": s} for s, ps in groups.items()], cfg)
    batches = _cycled_batches(tensors, cfg.batch_size, seed)
    aux_batches = _cycled_batches(aux, cfg.batch_size, seed + 1) if aux else None
    log: list[dict] = []
    best: tuple[float, int, dict] | None = None  # (value, step, state of keep)
    running, since, samples, aux_samples, stale = 0.0, 0, 0, 0, 0
    bar = tqdm(total=cfg.steps, desc=desc, unit="step")
    module.train()
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * g["lr_scale"] * lr_factor(step, cfg)
        batch = next(batches)
        samples += len(batch[next(iter(tensors))])
        if aux_batches is not None:
            batch["aux"] = next(aux_batches)
            aux_samples += len(batch["aux"][next(iter(aux))])
        loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step()
        running, since = running + loss.item(), since + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        if done % cfg.eval_every and done != cfg.steps:
            continue
        entry = {"step": done, "train_loss": round(running / since, 5)}
        running, since = 0.0, 0
        if validate is not None:
            module.eval()
            with torch.no_grad():
                entry.update(validate())
            module.train()
        log.append(entry)
        tqdm.write(f"{desc}: {entry}")
        if select is not None and select in entry:
            if best is None or entry[select] > best[0]:
                best, stale = (entry[select], done, copy.deepcopy(_state(keep))), 0
            else:
                stale += 1
                if cfg.patience is not None and stale >= cfg.patience:
                    tqdm.write(f"{desc}: stopped at step {done}: no better {select} in {stale} evaluations "
                               f"(training.patience)")
                    break
    bar.close()
    module.eval()
    if best is None:  # no validation signal: the weights after the budget
        return FitResult(log, cfg, None, done, None, samples, aux_samples, done)
    with torch.no_grad():
        for k, v in _state(keep).items():
            v.copy_(best[2][k])
    return FitResult(log, cfg, select, best[1], best[0], samples, aux_samples, done)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The floating-point state a run learns (the frozen CLIP is held by plain reference, not in it)."""
    return {k: v for k, v in module.state_dict(keep_vars=True).items() if v.dtype.is_floating_point}


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    """Training tensors may be held in float16 (the feature caches' dtype, half the memory); batches are float32."""
    return t.float() if t.is_floating_point() else t


def _cycled_batches(tensors: dict[str, torch.Tensor], batch_size: int, seed: int):
    """Endless batches of ``tensors``: seeded reshuffles, each consumed in full before the next."""
    n = len(next(iter(tensors.values())))
    if n == 0:
        raise ValueError("a training source is empty")
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=gen)
        for b in range(0, n, batch_size):
            idx = order[b:b + batch_size]
            yield {k: _as_float32(v[idx]) for k, v in tensors.items()}
