"""Stages train_dualcoop@<run>, train_dualcoop_zsl@<run>, train_pvlr@<run>, train_coop@<variant>-<run>: train
one image-supervised method on one label budget of the cached trainval features
(data/models/<method>/<run>.safetensors); the evaluate_* stage of the same run scores the test split."""
import sys

from _common import image_supervised_stages, stage_args

from mlr_core.budgets import BudgetError
from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.models.clip import load_clip
from mlr_core.supervised import train_run

stage = stage_args(__doc__, lambda p: (p.add_argument("--budgets", default="data/budgets"),
                                       p.add_argument("--trainval", default="data/features/trainval.parquet")),
                   stages=image_supervised_stages("train"))
args, params = stage.args, stage.params
method, run = stage.item
mp = params.model
try:
    image_size = FeatureCache(args.trainval).meta["image_size"]
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, image_size)
    last = train_run(method, run, clip, params, budgets_dir=args.budgets, trainval_path=args.trainval)
except (BudgetError, CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
print(f"{method} {run}: trained, last epoch {last}  (data/models/{method}/{run}.safetensors)")
