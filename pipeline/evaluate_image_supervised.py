"""Stages evaluate_dualcoop, evaluate_pvlr, evaluate_coop@<coop, coop_dpt>: score the cached test split once
with each trained run of one image-supervised method and write its scores, metrics and plots
(data/scores/<method>/<run>.parquet, metrics/<method>/<run>.json; + ZSL / GZSL metrics for zsl- runs)."""
import sys

from _common import image_supervised_method, image_supervised_stages, stage_args

from mlr_core.budgets import BudgetError
from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.models.clip import load_clip
from mlr_core.supervised import evaluate_runs

stage = stage_args(__doc__, lambda p: (p.add_argument("--budgets", default="data/budgets"),
                                       p.add_argument("--test", default="data/features/test.parquet")),
                   stages=image_supervised_stages("evaluate"))
args, params = stage.args, stage.params
method = image_supervised_method(stage)
mp = params.model
try:
    image_size = FeatureCache(args.test).meta["image_size"]
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, image_size)
    summaries = evaluate_runs(method, clip, params, budgets_dir=args.budgets, test_path=args.test)
except (BudgetError, CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
for run, summary in summaries.items():
    extra = f"  ZSL F1@3 {summary['ZSL']['F1@3']:.2f}  GZSL F1@3 {summary['GZSL']['F1@3']:.2f}" if "ZSL" in summary else ""
    print(f"{method} {run}: mAP {summary['mAP']:.2f}{extra}  (metrics/{method}/{run}.json)")
