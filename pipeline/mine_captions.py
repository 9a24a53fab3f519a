"""Stage mine_captions: label caption sentences with the noun filter (data/captions/mined.parquet,
metrics/captions.json)."""
import sys

from _common import stage_args

from mlr_core.data.datasets import dataset_classes, dataset_info, load_from_params
from mlr_core.data.manifest import DatasetError
from mlr_core.text.mining import load_synonyms, mine_captions, write_mined

stage = stage_args(__doc__, lambda p: (p.add_argument("--out", default="data/captions/mined.parquet"),
                                       p.add_argument("--summary", default="metrics/captions.json")),
                   stages={"mine_captions": None})
args, params = stage.args, stage.params
cp, ds = params.captions, params.dataset
try:
    if cp.exclude_eval_images:  # the leakage guard needs the test split's image ids
        test = load_from_params(ds, splits=["test"])
        classes, test_ids = test.classes, set(test.image_ids)
    else:
        classes, test_ids = dataset_classes(ds.name, ds.root, classes=ds.classes), set()
    table = load_synonyms(cp.synonyms, classes)
    rows, summary = mine_captions([(s.kind, f"{cp.corpus_dir}/{s.file}") for s in cp.sources], table,
                                  exclude_image_ids=test_ids, template_repeats=cp.template_repeats,
                                  cap_per_class=cp.cap_per_class, seed=cp.seed)
except (DatasetError, ValueError, RuntimeError) as e:
    sys.exit(f"error: {e}")
summary = {"dataset": dataset_info(ds), **summary}
write_mined(rows, classes, summary, args.out, args.summary)
print(f"mined {summary['kept']} captions of {summary['sentences_read']} "
      f"({summary['excluded_eval_images']} excluded as test-image captions, {summary['dropped_no_class']} without a class)")
