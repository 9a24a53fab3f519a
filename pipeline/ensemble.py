"""Stage ensemble_partial / ensemble_fewshot: mix two methods' saved test scores after per-class min-max
normalisation, (1 - w) * base + w * other, and evaluate (params: evaluate.threshold, evaluate.top_k,
image_supervised.ensemble.weight)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError
from mlr_core.methods.ensemble import evaluate_ensemble

args, params = stage_args(__doc__, lambda p: (p.add_argument("--base", required=True),
                                              p.add_argument("--other", required=True),
                                              p.add_argument("--scores-dir", default="data/scores"),
                                              p.add_argument("--test", default="data/features/test.parquet")))
ev, w = params.evaluate, params.image_supervised.ensemble.weight
name = f"{args.base}+{args.other}"
try:
    summary = evaluate_ensemble(f"{args.scores_dir}/{args.base}.parquet", f"{args.scores_dir}/{args.other}.parquet", w,
                                args.test, threshold=ev.threshold, top_k=ev.top_k,
                                metrics_path=f"metrics/ensemble/{name}.json", plots_dir=f"plots/ensemble/{name}",
                                scores_path=f"data/scores/ensemble/{name}.parquet")
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
print(f"ensemble {name} (w={w}): mAP {summary['mAP']:.2f}  (metrics/ensemble/{name}.json)")
