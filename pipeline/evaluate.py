"""Stage evaluate: score the cached test split with one method and write its metrics and plots
(params: model, evaluate; tai_dpt for the trained prompts)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.evaluate import evaluate_scores, score_cache, write_scores
from mlr_core.methods import DATA_FREE, PROMPT_TUNED, T2I_PAL, ZERO_SHOT, build_scorer
from mlr_core.models.clip import load_clip

args, params = stage_args(__doc__, lambda p: (p.add_argument("--method", required=True,
                                                             choices=ZERO_SHOT + PROMPT_TUNED + T2I_PAL + DATA_FREE),
                                              p.add_argument("--features", default="data/features/test.parquet"),
                                              p.add_argument("--name", help="run name (trained artifact, scores, "
                                                             "metrics, plots); default: the method")))
name = args.name or args.method
ev, mp = params.evaluate, params.model
try:
    cache = FeatureCache(args.features)
    # The resolution is the features stage's choice; the weights and preprocessing must match the cache.
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, cache.meta["image_size"])
    cache.require_fingerprint(clip.fingerprint)
    scorer = build_scorer(args.method, clip, cache.classes, params, name=name)
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
ids, scores, probs, targets = score_cache(cache, scorer)
write_scores(f"data/scores/{name}.parquet", ids, cache.classes, scores)
summary = evaluate_scores(scores, probs, targets, cache.classes, threshold=ev.threshold, top_k=ev.top_k,
                          metrics_path=f"metrics/{name}.json", plots_dir=f"plots/{name}",
                          info={"method": name, "dataset": cache.meta.get("dataset"),
                                **{k: cache.meta[k] for k in ("voc_difficult", "coco_unannotated") if k in cache.meta},
                                "arch": mp.arch, "image_size": cache.meta["image_size"]})
print(f"{name}: mAP {summary['mAP']:.2f}  (metrics/{name}.json)")
