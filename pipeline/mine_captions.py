"""Stage mine_captions: label caption sentences with the noun filter (params: captions, dataset)."""
import sys

from _common import stage_args

from mlr_core.data.datasets import load_dataset
from mlr_core.data.manifest import DatasetError
from mlr_core.text.mining import load_synonyms, mine_captions, write_mined

args, params = stage_args(__doc__, lambda p: (p.add_argument("--out", default="data/captions/mined.parquet"),
                                              p.add_argument("--summary", default="metrics/captions.json")))
cp, ds = params.captions, params.dataset
try:
    data = load_dataset(ds.name, ds.root, manifest=ds.manifest, classes=ds.classes, voc_difficult=ds.voc_difficult,
                        coco_unannotated=ds.coco_unannotated)
    table = load_synonyms(cp.synonyms, data.classes)
    test_ids = set(data.subset("test").image_ids) if cp.exclude_eval_images else set()
    rows, summary = mine_captions([(s.kind, f"{cp.corpus_dir}/{s.file}") for s in cp.sources], table, exclude_image_ids=test_ids,
                                  template_repeats=cp.template_repeats, cap_per_class=cp.cap_per_class, seed=cp.seed)
except (DatasetError, ValueError, RuntimeError) as e:
    sys.exit(f"error: {e}")
write_mined(rows, data.classes, summary, args.out, args.summary)
print(f"mined {summary['kept']} captions of {summary['sentences_read']} "
      f"({summary['excluded_eval_images']} excluded as test-image captions, {summary['dropped_no_class']} without a class)")
