"""Stage evaluate_dualcoop / evaluate_pvlr / evaluate_coop: score the cached test split once with one trained
image-supervised run and write its scores, metrics and plots (params: model, evaluate.threshold,
evaluate.top_k; image_supervised.<method> for its test-time fields)."""
import sys

from _common import image_supervised_args

from mlr_core.budgets import BudgetError
from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.models.clip import load_clip
from mlr_core.supervised import evaluate_run

args, params = image_supervised_args(__doc__, "--test", "data/features/test.parquet")
mp = params.model
try:
    image_size = FeatureCache(args.test).meta["image_size"]
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, image_size)
    summary = evaluate_run(args.method, args.run, clip, params, budgets_dir=args.budgets, test_path=args.test)
except (BudgetError, CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
extra = f"  ZSL F1@3 {summary['ZSL']['F1@3']:.2f}  GZSL F1@3 {summary['GZSL']['F1@3']:.2f}" if "ZSL" in summary else ""
print(f"{args.method} {args.run}: mAP {summary['mAP']:.2f}{extra}  (metrics/{args.method}/{args.run}.json)")
