"""Stage ensemble: mix two methods' saved test scores after per-class min-max normalisation,
(1 - w) * base + w * other, and evaluate; for each DualCoOp partial-label run (base: ensemble.partial_base)
and each few-shot run (base: ensemble.fewshot_base, other: ensemble.fewshot_method), in one process
(data/scores/ensemble/<base>+<other>_<run>.parquet, metrics/ensemble/<base>+<other>_<run>.json)."""
import sys

from _common import stage_args
from tqdm import tqdm

from mlr_core.cache import CacheMismatchError
from mlr_core.methods.ensemble import evaluate_ensemble

stage = stage_args(__doc__, lambda p: (p.add_argument("--scores-dir", default="data/scores"),
                                       p.add_argument("--test", default="data/features/test.parquet")),
                   stages={"ensemble": None})
args, params = stage.args, stage.params
ev, ep, isp = params.evaluate, params.image_supervised.ensemble, params.image_supervised
# (base, other method, run): the other method's scores of a run are data/scores/<method>/<run>.parquet
pairs = [(ep.partial_base, "dualcoop", run) for run in isp.dualcoop.runs]
pairs += [(ep.fewshot_base, ep.fewshot_method, run) for run in isp.coop.runs]
try:
    for base, method, run in tqdm(pairs, desc="ensembles", unit="pair"):
        name = f"{base}+{method}_{run}"
        summary = evaluate_ensemble(f"{args.scores_dir}/{base}.parquet", f"{args.scores_dir}/{method}/{run}.parquet",
                                    ep.weight, args.test, threshold=ev.threshold, top_k=ev.top_k,
                                    metrics_path=f"metrics/ensemble/{name}.json", plots_dir="plots",
                                    plot_name=f"ensemble/{name}", scores_path=f"data/scores/ensemble/{name}.parquet",
                                    info={"other": f"{method}_{run}"})
        print(f"ensemble {name} (w={ep.weight}): mAP {summary['mAP']:.2f}  (metrics/ensemble/{name}.json)")
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
