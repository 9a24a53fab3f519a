"""Stage features: encode one split of the dataset into the Parquet feature cache (params: model, dataset,
features). Data-parallel when started with `accelerate launch` (see README)."""
import sys

from _common import stage_args

from mlr_core.cache import FeatureCache, ImageReadError, launched_processes, write_feature_cache
from mlr_core.data.datasets import label_policy, load_dataset
from mlr_core.data.manifest import DatasetError
from mlr_core.models.clip import WeightsUnavailableError, load_clip

args, params = stage_args(__doc__, lambda p: (p.add_argument("--split", required=True),
                                              p.add_argument("--out", required=True),
                                              p.add_argument("--root", help="a generic-format folder (manifest.csv, "
                                                             "classes.txt) to encode instead of params' dataset, "
                                                             "e.g. the synthetic images (data/synthetic)")))
ds, feat, mp = params.dataset, params.features, params.model
try:
    processes = launched_processes(mp.device)
    if args.root:
        data, info = load_dataset("manifest", args.root).subset(args.split), {"dataset": args.root}
    else:
        data = load_dataset(ds.name, ds.root, manifest=ds.manifest, classes=ds.classes, voc_difficult=ds.voc_difficult,
                            coco_unannotated=ds.coco_unannotated).subset(args.split)
        info = {"dataset": ds.name, **label_policy(ds)}
    device = str(processes.device) if mp.device == "auto" else mp.device
    clip = load_clip(mp.arch, mp.pretrained, device, mp.precision, feat.image_size)
    write_feature_cache(data, clip, args.out, batch_size=feat.batch_size, shard_size=feat.shard_size,
                        num_workers=feat.num_workers, on_unreadable=feat.on_unreadable, processes=processes,
                        extra_meta={**info, "split": args.split})
except (DatasetError, ImageReadError, WeightsUnavailableError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
if processes.is_main_process:
    cache = FeatureCache(args.out)
    print(f"feature cache: {args.out}: {len(cache)} of {len(data)} images encoded, "
          f"{len(cache.meta['skipped'])} unreadable skipped (listed in the cache metadata)")
