"""One training loop over cached features, for every method that learns prompts or adapters.

A method supplies its learnable module and a ``loss(batch) -> tensor``; the loop owns seeding, batching
(in-memory tensors, reshuffled each epoch from a seeded generator), the optimiser and schedule, progress
bars and the per-epoch log. There is no model selection: the schedule is fixed, and what is logged on the
held-out part is for the reader, never used to pick a checkpoint (the reference's test-set selection is a
pitfall this project does not repeat).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser and schedule of one training run. The first five come from the method's params section
    (:meth:`from_section`); the schedule's shape is the method's own (cosine unless its paper says otherwise)."""

    optimizer: str  # sgd (momentum 0.9) | adamw
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    warmup_epochs: int = 0
    schedule: str = "cosine"  # cosine | constant | step (x step_gamma at each epoch in milestones)
    milestones: tuple[int, ...] = ()
    step_gamma: float = 0.1

    @classmethod
    def from_section(cls, section, **overrides) -> "OptimConfig":
        """The optimiser fields of a params section (``optimizer``, ``lr``, ``weight_decay``, ``epochs``,
        ``batch_size``), plus ``overrides``."""
        return cls(optimizer=section.optimizer, lr=section.lr, weight_decay=section.weight_decay,
                   epochs=section.epochs, batch_size=section.batch_size, **overrides)


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


def lr_factor(step: int, total: int, warmup: int, schedule: str, *, steps_per_epoch: int = 1,
              milestones: tuple[int, ...] = (), step_gamma: float = 0.1) -> float:
    """The multiplier of the base learning rate at ``step`` of ``total``: warm-up, then ``schedule``."""
    if step >= warmup and schedule == "constant":
        return 1.0
    if step >= warmup and schedule == "step":  # e.g. milestones (2, 5): x 0.1 from epoch 3 on, x 0.01 from 6 on
        epochs_done = step // steps_per_epoch
        return step_gamma ** sum(epochs_done >= m for m in milestones)
    return warmup_cosine(step, warmup, total)


def fit(module: torch.nn.Module, tensors: dict[str, torch.Tensor], loss_fn: Callable[[dict], torch.Tensor],
        cfg: OptimConfig, *, seed: int, desc: str,
        on_epoch_end: Callable[[int], dict] | None = None, aux: dict[str, torch.Tensor] | None = None) -> list[dict]:
    """Train ``module``'s trainable parameters on ``tensors`` (equal first dimension) for ``cfg.epochs``.

    ``aux`` is an optional second source (its own equal first dimension, e.g. synthetic images beside
    captions): each step also draws ``cfg.batch_size`` of its rows, cycling through seeded reshuffles of
    it independently of the epochs of ``tensors``, and passes them to ``loss_fn`` as ``batch["aux"]``.
    Returns the per-epoch log: mean training loss plus whatever ``on_epoch_end(epoch)`` reports.
    """
    n = len(next(iter(tensors.values())))
    if n == 0:
        raise ValueError(f"{desc}: no training samples")
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{desc}: the module has no trainable parameters")
    opt = make_optimizer(params, cfg)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(seed)
    aux_batches = _cycled_batches(aux, cfg.batch_size, seed + 1) if aux else None
    log, step = [], 0
    bar = tqdm(total=total, desc=desc, unit="step")
    for epoch in range(cfg.epochs):
        module.train()
        order = torch.randperm(n, generator=gen)
        running = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, total, cfg.warmup_epochs * steps_per_epoch, cfg.schedule,
                                             steps_per_epoch=steps_per_epoch, milestones=cfg.milestones,
                                             step_gamma=cfg.step_gamma)
            batch = {k: _as_float32(v[idx]) for k, v in tensors.items()}
            if aux_batches is not None:
                batch["aux"] = next(aux_batches)
            loss = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item()
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
        entry = {"epoch": epoch + 1, "train_loss": round(running / steps_per_epoch, 5)}
        if on_epoch_end is not None:
            module.eval()
            with torch.no_grad():
                entry.update(on_epoch_end(epoch + 1))
        log.append(entry)
        tqdm.write(str(entry))
    bar.close()
    return log


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    """Training tensors may be held in float16 (the feature caches' dtype, half the memory); batches are float32."""
    return t.float() if t.is_floating_point() else t


def _cycled_batches(tensors: dict[str, torch.Tensor], batch_size: int, seed: int):
    """Endless batches of ``tensors``: seeded reshuffles, each consumed in full before the next."""
    n = len(next(iter(tensors.values())))
    if n == 0:
        raise ValueError("the auxiliary training source is empty")
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=gen)
        for b in range(0, n, batch_size):
            idx = order[b:b + batch_size]
            yield {k: _as_float32(v[idx]) for k, v in tensors.items()}
