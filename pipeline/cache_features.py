"""Stage features: encode one split of the benchmark into the Parquet feature cache
(params: model, dataset, features)."""
import sys
from pathlib import Path

from _common import stage_args

from mlr_core.cache import ImageReadError, write_feature_cache
from mlr_core.data.manifest import DatasetError, read_manifest
from mlr_core.models.clip import WeightsUnavailableError, load_clip

args, params = stage_args(__doc__, lambda p: (p.add_argument("--split", required=True),
                                              p.add_argument("--out", required=True)))
ds, feat, mp = params.dataset, params.features, params.model
try:
    data = read_manifest(Path(ds.root) / ds.manifest, Path(ds.root) / ds.classes).subset(args.split)
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision, feat.image_size)
    write_feature_cache(data, clip, args.out, batch_size=feat.batch_size, shard_size=feat.shard_size,
                        num_workers=feat.num_workers, extra_meta={"dataset": ds.name, "split": args.split})
except (DatasetError, ImageReadError, WeightsUnavailableError, FileNotFoundError, ValueError) as e:
    # DataLoader workers wrap the original error in a traceback; its last line is the message.
    sys.exit(f"error: {str(e).strip().splitlines()[-1]}")
print(f"feature cache: {args.out} ({len(data)} images)")
