"""Stage ensemble: mix two methods' test scores after per-class min-max normalisation, (1 - w) * base + w * other,
w chosen on the validation part of trainval; for each DualCoOp partial-label run (base: ensemble.partial_base)
and each few-shot run (base: ensemble.fewshot_base, other: ensemble.fewshot_method), in one process
(data/scores/ensemble/<base>+<other>_<run>.parquet, metrics/ensemble/<base>+<other>_<run>.json)."""
import sys

from _common import stage_args

from mlr_core.budgets import BudgetError
from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.methods.ensemble import ensemble_runs
from mlr_core.models.clip import load_clip

stage = stage_args(__doc__, lambda p: (p.add_argument("--budgets", default="data/budgets"),
                                       p.add_argument("--trainval", default="data/features/trainval.parquet"),
                                       p.add_argument("--test", default="data/features/test.parquet")),
                   stages={"ensemble": None})
args, params, mp = stage.args, stage.params, stage.params.model
try:
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, FeatureCache(args.test).meta["image_size"])
    results = ensemble_runs(clip, params, trainval_path=args.trainval, test_path=args.test, budgets_dir=args.budgets)
except (BudgetError, CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
for name, m in results.items():
    print(f"ensemble {name} (w={m['weight']}): mAP {m['mAP']:.2f}  (metrics/ensemble/{name}.json)")
