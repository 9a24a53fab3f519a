"""Stage dualcoop / pvlr / coop: train one image-supervised method on one label budget of the cached
trainval features and evaluate it on the cached test split (params: model, evaluate.threshold,
evaluate.top_k, image_supervised.<method>)."""
import sys

from _common import stage_args

from mlr_core.budgets import BudgetError
from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.models.clip import load_clip
from mlr_core.supervised import METHODS, train_and_evaluate

args, params = stage_args(__doc__, lambda p: (p.add_argument("--method", required=True, choices=METHODS),
                                              p.add_argument("--run", required=True),
                                              p.add_argument("--budgets", default="data/budgets"),
                                              p.add_argument("--trainval", default="data/features/trainval.parquet"),
                                              p.add_argument("--test", default="data/features/test.parquet")))
mp = params.model
try:
    image_size = FeatureCache(args.trainval).meta["image_size"]
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, image_size)
    summary = train_and_evaluate(args.method, args.run, clip, params, budgets_dir=args.budgets,
                                 trainval_path=args.trainval, test_path=args.test)
except (BudgetError, CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
extra = f"  ZSL F1@3 {summary['ZSL']['F1@3']:.2f}  GZSL F1@3 {summary['GZSL']['F1@3']:.2f}" if "ZSL" in summary else ""
print(f"{args.method} {args.run}: mAP {summary['mAP']:.2f}{extra}  (metrics/{args.method}/{args.run}.json)")
