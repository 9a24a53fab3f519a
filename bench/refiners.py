"""What the training-free refiners cost per image against the base method's own scoring, on the cached
tinyworld test split (1,000 images) with the default params. Writes bench/results/refiners.json.

* **base scoring**: the base's test-time scorer on the cached features (``mlr_core.evaluate.score_cache``:
  zsclip_dpt, tai_dpt s0), what its evaluation stage spends per image;
* **SPARC**: per image, the cosines of its global feature with the bare class names and the compound prompts
  (the prompts' text features are encoded once per dataset: reported apart, as ``once_s``) and the refinement
  itself (standardisations, per-class projection), transductive and with the reference set's statistics
  (fitted once on trainval's scores: ``once_s``);
* **class concepts**: the concepts (once) and, per image, the attention of its global and 16 region features over
  the 20,120-text bank and the concept scores; also without the refinement (``concept_only``).

Median of ``--repeats`` timed calls (after one untimed) at ``--threads`` CPU threads; ms per image = call time
/ images. Usage: python bench/refiners.py [--repeats 5] [--threads 1]
"""
from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mlr_core  # noqa: E402,F401  (pins the CPU math kernels)
from mlr_core.cache import FeatureCache  # noqa: E402
from mlr_core.config import load_params  # noqa: E402
from mlr_core.evaluate import read_scores, score_cache  # noqa: E402
from mlr_core.io import atomic_write_json  # noqa: E402
from mlr_core.methods import class_concepts as cc  # noqa: E402
from mlr_core.methods import sparc as sp  # noqa: E402
from mlr_core.methods.registry import build_scorer  # noqa: E402
from mlr_core.methods.zsclip import hand_crafted_text  # noqa: E402
from mlr_core.models.clip import load_clip  # noqa: E402
from mlr_core.scores import global_logits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "refiners.json"


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    params = load_params("params.yaml")
    mp, sp_p, cp = params.model, params.refine.sparc, params.refine.concepts
    test, trainval = FeatureCache("data/features/test.parquet"), FeatureCache("data/features/trainval.parquet")
    clip = load_clip(mp.arch, mp.pretrained, "cpu", mp.precision, test.meta["image_size"])
    n, classes = len(test), test.classes
    batch = test.read(("global", "dense"))
    g, d = (torch.from_numpy(x.astype(np.float32)) for x in (batch.global_, batch.dense))
    per_image = lambda s: round(1000 * s / n, 4)  # noqa: E731
    out = {"images": n, "classes": len(classes), "threads": args.threads, "repeats": args.repeats,
           "machine": platform.processor() or platform.machine(), "ms_per_image": {}, "once_s": {}}

    for method, artifact in (("zsclip_dpt", None), ("tai_dpt", "data/prompts/tai_dpt/s0.safetensors")):
        scorer = build_scorer(method, clip, classes, params, artifact)
        out["ms_per_image"][f"base scoring: {method}"] = per_image(timed(lambda: score_cache(test, scorer), args.repeats))

    caps = FeatureCache("data/features/captions.parquet").read(("global",))
    prompts, members = sp.compound_prompts(caps.labels, classes, pairs_per_class=sp_p.pairs_per_class,
                                           triples_per_class=sp_p.triples_per_class,
                                           pair_template=sp_p.pair_template, triple_template=sp_p.triple_template)
    t0 = time.perf_counter()
    bare, compound = hand_crafted_text(clip, classes, sp_p.bare_template), hand_crafted_text(clip, prompts, "{}")
    out["once_s"][f"sparc: encode {len(prompts)} compound + {len(classes)} bare prompts"] = round(time.perf_counter() - t0, 4)
    out["ms_per_image"]["sparc: image cosines S, P"] = per_image(timed(
        lambda: (global_logits(g, bare, 1.0), global_logits(g, compound, 1.0)), args.repeats))
    S, P = (global_logits(g, t, 1.0).double().numpy() for t in (bare, compound))
    _, E, _ = read_scores("data/scores/tai_dpt/s0.parquet")
    cfg = sp.build_refiner(params)
    out["ms_per_image"]["sparc: refine (transductive)"] = per_image(timed(lambda: sp.sparc(E, S, P, members, cfg),
                                                                         args.repeats))
    tv = trainval.read(("global",))
    gt = torch.from_numpy(tv.global_.astype(np.float32))
    _, E_ref, _, _ = score_cache(trainval, build_scorer("tai_dpt", clip, classes, params,
                                                        "data/prompts/tai_dpt/s0.safetensors"))
    S_ref, P_ref = (global_logits(gt, t, 1.0).double().numpy() for t in (bare, compound))
    t0 = time.perf_counter()
    stats = sp.fit_statistics(E_ref, S_ref, P_ref, members, cfg)
    out["once_s"]["sparc: reference statistics from trainval's scores"] = round(time.perf_counter() - t0, 4)
    out["ms_per_image"]["sparc: refine (reference set)"] = per_image(timed(
        lambda: sp.apply_statistics(E, S, P, members, stats, cfg), args.repeats))

    texts = [FeatureCache(f"data/features/{k}.parquet").read(("global",)) for k in ("captions", "llm_sentences")]
    bank = torch.from_numpy(np.concatenate([t.global_ for t in texts]).astype(np.float32))
    labels = torch.from_numpy(np.concatenate([t.labels for t in texts]).astype(np.int64))
    ccfg = cc.build_refiner(params)
    t0 = time.perf_counter()
    concepts = cc.class_concepts(bank, labels)
    out["once_s"][f"class concepts: concepts of a {len(bank)}-text bank"] = round(time.perf_counter() - t0, 4)
    for variant in ("all", "concept_only"):
        v = ccfg.variant(variant)
        out["ms_per_image"][f"class concepts: {variant}"] = per_image(timed(
            lambda: cc.logit_ensemble(E, 4.0, cc.concept_scores(g, d, bank, concepts, v).double().numpy(), v.weight),
            args.repeats))
    atomic_write_json(RESULTS, out)
    for k, v in out["ms_per_image"].items():
        print(f"{k:45s} {v:9.4f} ms/image")
    for k, v in out["once_s"].items():
        print(f"{k:45s} {v:9.4f} s once")


if __name__ == "__main__":
    main()
