"""Stages train_dualcoop, train_pvlr, train_coop@<coop, coop_dpt>: train one image-supervised method on each of
its runs' label budgets of the cached trainval features, in one process (data/models/<method>/<run>.safetensors,
plots/train/<method>/<run>.json); the evaluate_* stage of the same method scores the test split."""
import sys

from _common import image_supervised_method, image_supervised_stages, stage_args

from mlr_core.budgets import BudgetError
from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.models.clip import load_clip
from mlr_core.supervised import train_runs

stage = stage_args(__doc__, lambda p: (p.add_argument("--budgets", default="data/budgets"),
                                       p.add_argument("--trainval", default="data/features/trainval.parquet")),
                   stages=image_supervised_stages("train"))
args, params = stage.args, stage.params
method = image_supervised_method(stage)
mp = params.model
try:
    image_size = FeatureCache(args.trainval).meta["image_size"]
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, image_size)
    last = train_runs(method, clip, params, budgets_dir=args.budgets, trainval_path=args.trainval)
except (BudgetError, CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
for run, entry in last.items():
    print(f"{method} {run}: trained, last epoch {entry}  (data/models/{method}/{run}.safetensors)")
