"""What one optimiser step costs for each trained method on cached features at RN50 size, and so what the shared
step budget (``training.steps``) costs per run. Writes bench/results/step_cost.json.

The budget rule gives every trained method the same number of optimiser steps; their steps cost very different
amounts (how many text-tower passes the prompts need, the batch size, the head). Each method's real module is
built on an open_clip RN50 (random weights: timing does not depend on them) at 224 px, with the 80 COCO class
names, and trained by ``mlr_core.train.fit`` itself (its batching, optimiser and schedule; no validation) on
random cached-feature tensors of the shapes the caches hold: global features (B, D) with D the embed dim,
image regions (B, 49, D) (RN50's 7 x 7 map), caption tokens (B, 77, D) with a (B, 77) mask of 8-16 valid
tokens, labels (B, C) with 3 positives per row. Caption / sentence / synthetic-image tensors are float32 (as
their loaders give them), the image-supervised ones float16 (as ``mlr_core.supervised`` holds the budgets;
``fit`` casts each batch). Batch sizes, optimisers and loss settings are each method's params.yaml section;
the data-free prompts take the paper's token counts (16 shared, 8 + 4 partial, 4 specific: the RN50 text
context is 77 tokens) and 4 coarse / 8 fine groups of the classes; PVLR includes its EMA update.

One step = batch gathering + loss + backward + optimiser step (+ EMA), as ``fit`` runs it. After an untimed
1-step ``fit`` (warm-up), ``fit`` runs ``--steps`` steps ``--repeats`` times; ms/step is the median over the
repeats of (call time / steps). A step here costs seconds (every step runs the frozen RN50 text tower, forward
and backward, on the 80 class prompts of 77 tokens, once per learnable context), against milliseconds of
per-call overhead in ``fit``, so the default is 1 step per repeat; the whole default run (8 methods) takes
about 20 minutes on one thread. The per-run budget time is ``training.steps`` x ms/step: validation every
``training.eval_every`` steps, loading and saving are not included.

Usage: python bench/step_cost.py [--steps 1] [--repeats 3] [--threads 1] [--methods tai dualcoop ...]
"""
from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: fit's progress bars would print rates

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

import mlr_core  # noqa: E402,F401  (pins the CPU math kernels before the first computation)
from mlr_core.config import load_params  # noqa: E402
from mlr_core.io import atomic_write_json  # noqa: E402
from mlr_core.models.clip import load_clip  # noqa: E402
from mlr_core.train import OptimConfig, fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "step_cost.json"
METHODS = ("tai", "tai_dpt", "datafree", "t2i_pal", "dualcoop", "pvlr", "coop", "coop_dpt")
IMAGE_SIZE = 224
REGIONS = 49      # RN50's 7 x 7 map at 224 px
TEXT_LEN = 77     # RN50's text context
POSITIVES = 3     # per row


def coco_classes() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures_real import COCO_CATEGORIES

    return [name for _, name, _ in COCO_CATEGORIES]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class Features:
    """Random cached-feature tensors of the caches' shapes; one batch of rows (fit reshuffles each pass)."""

    def __init__(self, dim: int, n_classes: int, seed: int = 0):
        self.dim, self.n_classes = dim, n_classes
        self.gen = torch.Generator().manual_seed(seed)

    def labels(self, n: int) -> torch.Tensor:
        idx = torch.rand(n, self.n_classes, generator=self.gen).argsort(dim=1)[:, :POSITIVES]
        return torch.zeros(n, self.n_classes, dtype=torch.int64).scatter_(1, idx, 1)

    def captions(self, n: int, tokens_key: str) -> dict[str, torch.Tensor]:
        lengths = torch.randint(8, 17, (n,), generator=self.gen)
        return {"global": torch.randn(n, self.dim, generator=self.gen),
                tokens_key: torch.randn(n, TEXT_LEN, self.dim, generator=self.gen),
                "mask": torch.arange(TEXT_LEN)[None] < lengths[:, None],
                "labels": self.labels(n)}

    def images(self, n: int, dense_key: str, dtype=torch.float32) -> dict[str, torch.Tensor]:
        return {"global": torch.randn(n, self.dim, generator=self.gen).to(dtype),
                dense_key: torch.randn(n, REGIONS, self.dim, generator=self.gen).to(dtype),
                "labels": self.labels(n)}


def optim_for(section, training, **extra) -> OptimConfig:
    return OptimConfig.from_params(section, training, **extra)


def build(method: str, clip, classes: list[str], params, feats: Features):
    """-> (module, loss_fn, tensors, aux tensors or None, OptimConfig, on_step or None, samples per step)."""
    from mlr_core.methods.coop import image_ranking_loss
    from mlr_core.methods.datafree import HierarchicalPrompts, HierarchyConfig, group_index
    from mlr_core.methods.dualcoop import DualCoOp, DualCoOpConfig
    from mlr_core.methods.pvlr import PVLR, Ema, PvlrConfig
    from mlr_core.methods.t2i_pal import PalConfig, T2IPal
    from mlr_core.methods.tai_dpt import DoubleGrainedPrompts, PromptConfig
    from mlr_core.methods.zsclip import hand_crafted_text

    training = params.training
    if method in ("tai", "tai_dpt"):
        p = params.tai_dpt
        model = DoubleGrainedPrompts(clip, classes, PromptConfig(p.n_ctx, p.class_specific, p.init,
                                                                 use_local=method == "tai_dpt"), seed=0)
        return (model, lambda b: model.text_loss(b, p.scale, p.text_temperature, p.margin),
                feats.captions(p.batch_size, "tokens"), None, optim_for(p, training), None, p.batch_size)
    if method == "datafree":
        p = params.datafree
        n_coarse, n_fine = 4, 8
        groups = tuple(group_index([classes[g::n] for g in range(n)], classes) for n in (n_coarse, n_fine))
        cfg = HierarchyConfig(layout=p.layout, n_shared=16, n_partial=(8, 4), n_specific=4, groups=groups,
                              use_local=p.use_local)
        model = HierarchicalPrompts(clip, classes, cfg, seed=0)
        anchor = hand_crafted_text(clip, classes, p.hand_template)
        return (model, lambda b: model.loss(b, anchor, scale=p.scale, text_temperature=p.text_temperature,
                                            margin=p.margin, order_weight=p.order_weight,
                                            order_temperature=p.order_temperature),
                feats.captions(p.batch_size, "tokens"), None,
                optim_for(p, training, schedule="step", milestones=tuple(p.milestones)), None, p.batch_size)
    if method == "t2i_pal":
        p = params.t2i_pal
        model = T2IPal(clip, classes, PalConfig(n_ctx=p.n_ctx, class_specific=p.class_specific, adapter=p.adapter,
                                                alpha=p.alpha, beta=p.beta, tau=p.tau, scale=p.scale), seed=0)

        def loss_fn(batch):  # train_on: both (what mlr_core.methods.t2i_pal.train_t2i_pal does)
            f = model.class_features()
            return p.gamma * model.branch_loss(batch["aux"], f, p.margin) + (1 - p.gamma) * model.branch_loss(
                batch, f, p.margin)

        return (model, loss_fn, feats.captions(p.batch_size, "local"), feats.images(p.batch_size, "local"),
                optim_for(p, training), None, 2 * p.batch_size)
    isp = params.image_supervised
    if method == "dualcoop":
        p = isp.dualcoop
        model = DualCoOp(clip, classes, DualCoOpConfig(n_ctx=p.n_ctx, class_specific=p.class_specific,
                                                       region_scale=p.region_scale, logit_scale=p.logit_scale), seed=0)
        return (model, lambda b: model.loss(b, p.asl.gamma_pos, p.asl.gamma_neg, p.asl.clip),
                feats.images(p.batch_size, "dense", torch.float16), None, optim_for(p, training), None,
                p.batch_size)
    if method == "pvlr":
        p = isp.pvlr
        model = PVLR(clip, classes, PvlrConfig(p.hard_prompt, p.n_ctx, p.num_heads), seed=0)
        ema = Ema(model, p.ema_decay) if p.ema_decay > 0 else None
        return (model, lambda b: model.loss(b, gamma_pos=p.asl.gamma_pos, gamma_neg=p.asl.gamma_neg, clip=p.asl.clip,
                                            kcr_weight=p.kcr_weight),
                feats.images(p.batch_size, "dense", torch.float16), None, optim_for(p, training),
                None if ema is None else (lambda: ema.update(model)), p.batch_size)
    if method in ("coop", "coop_dpt"):
        p = isp.coop
        model = DoubleGrainedPrompts(clip, classes, PromptConfig(p.n_ctx, p.class_specific, None,
                                                                 use_local=method == "coop_dpt"), seed=0)
        return (model, lambda b: image_ranking_loss(model, b, scale=p.scale, image_temperature=p.image_temperature,
                                                    margin=p.margin),
                feats.images(p.batch_size, "dense", torch.float16), None, optim_for(p, training), None,
                p.batch_size)
    raise ValueError(f"unknown method {method!r}; known: {METHODS}")


def run_fit(module, tensors, loss_fn, cfg: OptimConfig, steps: int, on_step, aux) -> float:
    """Seconds of one ``fit`` call of ``steps`` steps (no validation; its log lines swallowed)."""
    cfg = dataclasses.replace(cfg, steps=steps, warmup_steps=0, eval_every=steps)
    with contextlib.redirect_stdout(io.StringIO()):
        t = time.perf_counter()
        fit(module, tensors, loss_fn, cfg, seed=0, desc="step_cost", on_step=on_step, aux=aux)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1, help="timed steps per repeat (after one untimed warm-up step)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    params = load_params(args.params)
    clip = load_clip("RN50", None, "cpu", image_size=IMAGE_SIZE)
    dim = int(clip.model.text_projection.shape[1])
    classes = coco_classes()
    budget = params.training.steps
    result = {"setup": {"arch": "RN50 (open_clip, random weights)", "image_size": IMAGE_SIZE,
                        "embed_dim": dim, "regions": REGIONS, "text_context": TEXT_LEN, "classes": len(classes),
                        "class_names": "COCO (80)", "positives_per_row": POSITIVES, "threads": args.threads,
                        "torch": torch.__version__, "cpu": cpu_model(),
                        "cpu_math": os.environ.get("MLR_CPU_MATH", "avx2"), "device": "cpu",
                        "steps_per_repeat": args.steps, "repeats": args.repeats,
                        "warmup_steps_untimed": 1, "budget_steps": budget,
                        "statistic": "median over repeats of fit(steps) seconds / steps"},
              "methods": {}}
    for method in args.methods:
        print(f"{method}: building", flush=True)
        module, loss_fn, tensors, aux, cfg, on_step, samples = build(method, clip, classes, params,
                                                                     Features(dim, len(classes)))
        n_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        print(f"{method}: warm-up and {args.repeats} x {args.steps} steps", flush=True)
        run_fit(module, tensors, loss_fn, cfg, 1, on_step, aux)
        per_step = [run_fit(module, tensors, loss_fn, cfg, args.steps, on_step, aux) / args.steps
                    for _ in range(args.repeats)]
        ms = statistics.median(per_step) * 1000
        result["methods"][method] = {
            "batch_size": cfg.batch_size, "samples_per_step": samples, "optimizer": cfg.optimizer,
            "trainable_params": n_params, "ms_per_step": round(ms, 1),
            "ms_per_step_repeats": [round(s * 1000, 1) for s in per_step],
            "budget_seconds_per_run": round(budget * ms / 1000, 1)}
        del module, loss_fn, tensors, aux, on_step
        atomic_write_json(RESULTS, result)  # after each method: a partial run keeps what it measured
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
