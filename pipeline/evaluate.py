"""Stages evaluate_zsclip, evaluate_zsclip_dpt (zero-shot), evaluate_prompts@<tai, tai_dpt>,
evaluate_datafree, evaluate_t2i_pal@<seed>: score the cached test split with one method and write its
scores, metrics and plots (data/scores/<name>.parquet, metrics/<name>.json, plots/ap_per_class/<name>.json, plots/pr_curve/<name>.json)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.evaluate import evaluate_method
from mlr_core.methods.registry import build_scorer
from mlr_core.models.clip import load_clip

STAGES = {"evaluate_zsclip": None, "evaluate_zsclip_dpt": None, "evaluate_datafree": None,
          "evaluate_prompts": lambda p: p.tai_dpt.variants, "evaluate_t2i_pal": lambda p: p.t2i_pal.seeds}
stage = stage_args(__doc__, lambda p: (p.add_argument("--features", default="data/features/test.parquet"),
                                       p.add_argument("--prompts-dir", default="data/prompts")), stages=STAGES)
args, params = stage.args, stage.params
# the stage's method (a registry name) and run name (its artifact, scores, metrics and plots)
method, name = {"evaluate_zsclip": ("zsclip", "zsclip"), "evaluate_zsclip_dpt": ("zsclip_dpt", "zsclip_dpt"),
                "evaluate_datafree": ("datafree", "datafree"), "evaluate_prompts": (stage.item, stage.item),
                "evaluate_t2i_pal": ("t2i_pal", f"t2i_pal_s{stage.item}")}[stage.base]
ev, mp = params.evaluate, params.model
try:
    cache = FeatureCache(args.features)
    # The resolution is the features stage's choice; the weights and preprocessing must match the cache.
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, cache.meta["image_size"])
    cache.require_fingerprint(clip.fingerprint)
    artifact = None if method.startswith("zsclip") else f"{args.prompts_dir}/{name}.safetensors"
    scorer = build_scorer(method, clip, cache.classes, params, artifact)
    summary, _, _ = evaluate_method(cache, scorer, name=name, threshold=ev.threshold, top_k=ev.top_k,
                                    scores_path=f"data/scores/{name}.parquet", metrics_path=f"metrics/{name}.json",
                                    plots_dir="plots")
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
print(f"{name}: mAP {summary['mAP']:.2f}  (metrics/{name}.json)")
