"""Stage features@<split>: encode one split of the dataset into the Parquet feature cache
(data/features/<split>.parquet); stage features_views: seeded augmented views of the trainval split
(features.views; data/features/trainval_views.parquet); stage features_synthetic: the same for a
generic-format folder given by --root (the synthetic images). Data-parallel when started with `accelerate launch` (see README)."""
import sys

from _common import stage_args

from mlr_core.cache import FeatureCache, ImageReadError, write_feature_cache
from mlr_core.data.datasets import dataset_info, load_from_params
from mlr_core.data.manifest import DatasetError, read_manifest_folder
from mlr_core.models.clip import WeightsUnavailableError, load_clip
from mlr_core.shards import launched_processes
from mlr_core.views import ViewAugment

stage = stage_args(__doc__, lambda p: (
    p.add_argument("--root", help="features_synthetic: a generic-format folder (manifest.csv, classes.txt)"),
    p.add_argument("--split", help="features_synthetic: the split of --root to encode"),
    p.add_argument("--out", help="the cache file (features@<split>: data/features/<split>.parquet)")),
    stages={"features": lambda p: p.features.splits, "features_views": None, "features_synthetic": None})
args, params = stage.args, stage.params
feat, mp = params.features, params.model
try:
    processes = launched_processes(mp.device)
    if stage.base == "features_synthetic":
        if not (args.root and args.split and args.out):
            raise ValueError("features_synthetic needs --root, --split and --out")
        split, out = args.split, args.out
        data = read_manifest_folder(args.root).subset(split)
        info = {"dataset": {"name": "manifest", "root": args.root}}
    else:
        ds = params.dataset
        split = "trainval" if stage.base == "features_views" else stage.item
        out = args.out or f"data/features/{split}{'_views' if stage.base == 'features_views' else ''}.parquet"
        data = load_from_params(ds, splits=[split])
        info = {"dataset": dataset_info(ds)}
    device = str(processes.device) if mp.device == "auto" else mp.device
    clip = load_clip(mp.arch, mp.pretrained, device, mp.precision, feat.image_size)
    write_feature_cache(data, clip, out, batch_size=feat.batch_size, shard_size=feat.shard_size,
                        num_workers=feat.num_workers, on_unreadable=feat.on_unreadable, processes=processes,
                        extra_meta={**info, "split": split},
                        views=ViewAugment.from_params(feat.views) if stage.base == "features_views" else None)
except (DatasetError, ImageReadError, WeightsUnavailableError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
if processes.is_main_process:
    cache = FeatureCache(out)
    what = f"views of {len(data)} images" if stage.base == "features_views" else f"of {len(data)} images"
    print(f"feature cache: {out}: {len(cache)} {what} encoded, "
          f"{len(cache.meta['skipped'])} unreadable skipped (listed in the cache metadata)")
