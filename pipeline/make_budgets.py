"""Stage budgets: draw the label budgets of the trainval split once (validation part, partial-label masks,
K-shot subsets, zero-shot seen/unseen splits), seeded, into data/budgets."""
import sys

from _common import stage_args

from mlr_core.budgets import BudgetError, write_budgets
from mlr_core.data.datasets import load_from_params
from mlr_core.data.manifest import DatasetError

stage = stage_args(__doc__, lambda p: p.add_argument("--out", default="data/budgets"), stages={"budgets": None})
args, params = stage.args, stage.params
ds, bp = params.dataset, params.image_supervised.budgets
try:
    data = load_from_params(ds, splits=["trainval"])
    index = write_budgets(data.image_ids, data.targets, data.classes, args.out, val_fraction=bp.val_fraction,
                          val_seed=bp.val_seed, seeds=bp.seeds, proportions=bp.proportions, shots=bp.shots,
                          zeroshot_splits=[s.model_dump() for s in bp.zeroshot_splits])
except (DatasetError, BudgetError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
print(f"budgets: {args.out}: {len(index['budgets'])} label sets from {index['n_trainval']} trainval images")
