"""Stages refine_sparc, refine_class_concepts: a training-free refiner (SPARC score fusion; class concepts from
the caption / LLM text bank) on the saved test scores of every base run of refine.bases, and its ablations
(data/scores/<refiner>/<name>.parquet, metrics/<refiner>/<name>.json, plots/{ap_per_class,pr_curve}/<refiner>/;
names: mlr_core/refine.py)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError, FeatureCache
from mlr_core.refine import refine_class_concepts, refine_sparc

stage = stage_args(__doc__, lambda p: (p.add_argument("--features", default="data/features/test.parquet"),
                                       p.add_argument("--reference", default="data/features/trainval.parquet"),
                                       p.add_argument("--captions", default="data/features/captions.parquet"),
                                       p.add_argument("--llm", default="data/features/llm_sentences.parquet"),
                                       p.add_argument("--prompts-dir", default="data/prompts")),
                   stages={"refine_sparc": None, "refine_class_concepts": None})
args, params = stage.args, stage.params
texts = {"captions": args.captions, "llm": args.llm}
try:
    if stage.base == "refine_sparc":
        from mlr_core.models.clip import load_clip

        mp = params.model
        clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, FeatureCache(args.features).meta["image_size"])
        refiner, results = "sparc", refine_sparc(clip, params, test_path=args.features, reference_path=args.reference,
                                                 texts=texts, prompts_dir=args.prompts_dir)
    else:
        refiner, results = "class_concepts", refine_class_concepts(params, test_path=args.features, texts=texts)
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
for name, summary in results.items():
    print(f"{refiner}/{name}: mAP {summary['mAP']:.2f}  (metrics/{refiner}/{name}.json)")
