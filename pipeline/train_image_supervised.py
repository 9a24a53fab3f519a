"""Stage dualcoop / pvlr / coop: train one image-supervised method on one label budget of the cached
trainval features (params: model, image_supervised.<method>); stage evaluate_<method> scores the test split."""
import sys

from _common import image_supervised_args

from mlr_core.budgets import BudgetError
from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.models.clip import load_clip
from mlr_core.supervised import train_run

args, params = image_supervised_args(__doc__, "--trainval", "data/features/trainval.parquet")
mp = params.model
try:
    image_size = FeatureCache(args.trainval).meta["image_size"]
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, image_size)
    last = train_run(args.method, args.run, clip, params, budgets_dir=args.budgets, trainval_path=args.trainval)
except (BudgetError, CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
print(f"{args.method} {args.run}: trained, last epoch {last}  (data/models/{args.method}/{args.run}.safetensors)")
