"""Stages train_dualcoop, train_pvlr, train_coop@<coop, coop_dpt>: train one image-supervised method on each of
its runs' label budgets of the cached trainval features and their augmented views (--views), in one process (data/models/<method>/<run>.safetensors,
plots/train/<method>/<run>.json). Stages evaluate_dualcoop, evaluate_pvlr, evaluate_coop@<coop, coop_dpt>:
score the cached test split once with each trained run (data/scores/<method>/<run>.parquet,
metrics/<method>/<run>.json; + ZSL / GZSL metrics for zsl- runs)."""
import sys

from _common import image_supervised_method, image_supervised_stages, stage_args
from _training import trace_worker_reads

from mlr_core.budgets import BudgetError
from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.models.clip import load_clip
from mlr_core.supervised import evaluate_runs, train_runs

stage = stage_args(__doc__, lambda p: (p.add_argument("--budgets", default="data/budgets"),
                                       p.add_argument("--features", help="trainval (train_*) or test (evaluate_*) cache"),
                                       p.add_argument("--views", help="train_*: the trainval views cache (features_views)"),
                                       p.add_argument("--trainval", default="data/features/trainval.parquet",
                                                      help="evaluate_*: the validation part's features (thresholds)")),
                   stages={**image_supervised_stages("train"), **image_supervised_stages("evaluate")})
args, params = stage.args, stage.params
method, training = image_supervised_method(stage), stage.base.startswith("train_")
trace_worker_reads(stage)
features = args.features or f"data/features/{'trainval' if training else 'test'}.parquet"
mp = params.model
try:
    # the resolution is the features stage's choice; the weights and preprocessing must match the cache
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, FeatureCache(features).meta["image_size"])
    if training:
        results = train_runs(method, clip, params, budgets_dir=args.budgets, trainval_path=features,
                             views_path=args.views)
    else:
        results = evaluate_runs(method, clip, params, budgets_dir=args.budgets, test_path=features,
                                trainval_path=args.trainval)
except (BudgetError, CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
for run, r in results.items():
    if training:
        print(f"{method} {run}: kept step {r['selected_step']} ({r['selected_on']} {r['selected_value']})  "
              f"(data/models/{method}/{run}.safetensors)")
    else:
        zsl = f"  ZSL F1@3 {r['ZSL']['F1@3']:.2f}  GZSL F1@3 {r['GZSL']['F1@3']:.2f}" if "ZSL" in r else ""
        print(f"{method} {run}: mAP {r['mAP']:.2f}{zsl}  (metrics/{method}/{run}.json)")
