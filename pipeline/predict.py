"""Stage predict: the classifier export predict.classifier applied to predict.images (a folder, glob, manifest or
list), as `python -m mlr_core.predict` does: data/predictions/predictions.<format>, metrics/predict.json (what was
tagged, the decision rule, and when predict.images is a manifest, against its labels: mAP and the rule's CF1 / OF1)
and plots/predict/contact_sheet.png (with the manifest's labels as ground truth)."""
import sys

from _common import stage_args

from mlr_core.classifier import ClassifierError
from mlr_core.data.manifest import DatasetError
from mlr_core.predict import PredictInputError, predict

stage = stage_args(__doc__, lambda p: (p.add_argument("--out-dir", default="data/predictions"),
                                       p.add_argument("--summary", default="metrics/predict.json"),
                                       p.add_argument("--contact-sheet", default="plots/predict/contact_sheet.png")),
                   stages={"predict": None})
args, pp = stage.args, stage.params.predict
try:
    summary = predict(pp.classifier, [pp.images], f"{args.out_dir}/predictions.{pp.format}", fmt=pp.format,
                      batch_size=pp.batch_size, shard_size=pp.shard_size, num_workers=pp.num_workers,
                      device=pp.device, threshold=pp.threshold, top_k=pp.top_k,
                      labels=pp.images if pp.images.endswith((".csv", ".jsonl")) else None,
                      pretrained=stage.params.model.pretrained, precision=stage.params.model.precision,
                      summary_path=args.summary,
                      contact_sheet=args.contact_sheet, sheet_images=pp.contact_sheet.images,
                      sheet_columns=pp.contact_sheet.columns, sheet_tags=pp.contact_sheet.tags)
except (ClassifierError, PredictInputError, DatasetError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
print(f"predict: {summary['n_scored']} images tagged, {summary['n_skipped']} skipped "
      f"({args.out_dir}/predictions.{pp.format})")
