"""Stages evaluate_zsclip, evaluate_zsclip_dpt (zero-shot: data/scores/<name>.parquet, metrics/<name>.json,
data/classifiers/<name>.safetensors), evaluate_prompts@<tai, tai_dpt>, evaluate_datafree, evaluate_t2i_pal (every
trained run: data/scores/<method>/<run>.parquet, metrics/<method>/<run>.json,
data/classifiers/<method>/<run>.safetensors): score the cached test split once per method or run and write its
scores, metrics, plots (plots/ap_per_class/..., plots/pr_curve/...) and classifier export."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.calibration import top_k_decision
from mlr_core.evaluate import evaluate_method
from mlr_core.methods.controls import DATAFREE_CONTROLS, T2I_PAL_CONTROLS
from mlr_core.methods.registry import build_scorer
from mlr_core.models.clip import load_clip
from mlr_core.seeded_runs import evaluate_seeded_runs

STAGES = {"evaluate_zsclip": None, "evaluate_zsclip_dpt": None, "evaluate_datafree": None, "evaluate_t2i_pal": None,
          "evaluate_prompts": lambda p: p.tai_dpt.variants}
stage = stage_args(__doc__, lambda p: (p.add_argument("--features", default="data/features/test.parquet"),
                                       p.add_argument("--prompts-dir", default="data/prompts")), stages=STAGES)
args, params = stage.args, stage.params
ev, mp = params.evaluate, params.model
try:
    cache = FeatureCache(args.features)
    # The resolution is the features stage's choice; the weights and preprocessing must match the cache.
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, cache.meta["image_size"])
    cache.require_fingerprint(clip.fingerprint)
    if stage.base in ("evaluate_zsclip", "evaluate_zsclip_dpt"):
        name = stage.base.removeprefix("evaluate_")
        summary, _, _ = evaluate_method(cache, build_scorer(name, clip, cache.classes, params), name=name,
                                        threshold=ev.threshold, top_k=ev.top_k, ece_bins=ev.ece_bins,
                                        scores_path=f"data/scores/{name}.parquet", metrics_path=f"metrics/{name}.json",
                                        plots_dir="plots", decision=top_k_decision(ev.decision_top_k),
                                        classifier_path=f"data/classifiers/{name}.safetensors")
        results = {name: summary}
    else:
        method, runs, controls = {"evaluate_prompts": lambda: (stage.item, params.tai_dpt.runs, {}),
                                  "evaluate_datafree": lambda: ("datafree", params.datafree.runs, DATAFREE_CONTROLS),
                                  "evaluate_t2i_pal": lambda: ("t2i_pal", params.t2i_pal.runs, T2I_PAL_CONTROLS),
                                  }[stage.base]()
        results = {f"{method}/{run}": m for run, m in evaluate_seeded_runs(
            method, runs, controls, clip, params, test_path=args.features, threshold=ev.threshold, top_k=ev.top_k,
            prompts_dir=args.prompts_dir).items()}
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
for name, summary in results.items():
    print(f"{name}: mAP {summary['mAP']}  (metrics/{name}.json)")  # null without a known label
