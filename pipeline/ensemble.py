"""Stage ensemble_partial@<run> / ensemble_fewshot@<run>: mix two methods' saved test scores after per-class
min-max normalisation, (1 - w) * base + w * other, and evaluate."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError
from mlr_core.methods.ensemble import evaluate_ensemble

stage = stage_args(__doc__, lambda p: (p.add_argument("--scores-dir", default="data/scores"),
                                       p.add_argument("--test", default="data/features/test.parquet")),
                   stages={"ensemble_partial": lambda p: p.image_supervised.dualcoop.runs,
                           "ensemble_fewshot": lambda p: p.image_supervised.coop.runs})
args, params = stage.args, stage.params
ev, ep = params.evaluate, params.image_supervised.ensemble
if stage.base == "ensemble_partial":
    base, other = ep.partial_base, f"dualcoop_{stage.item}"
else:
    base, other = ep.fewshot_base, f"{ep.fewshot_method}_{stage.item}"
name = f"{base}+{other}"
try:
    summary = evaluate_ensemble(f"{args.scores_dir}/{base}.parquet", f"{args.scores_dir}/{other}.parquet", ep.weight,
                                args.test, threshold=ev.threshold, top_k=ev.top_k,
                                metrics_path=f"metrics/ensemble/{name}.json", plots_dir=f"plots/ensemble/{name}",
                                scores_path=f"data/scores/ensemble/{name}.parquet")
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
print(f"ensemble {name} (w={ep.weight}): mAP {summary['mAP']:.2f}  (metrics/ensemble/{name}.json)")
