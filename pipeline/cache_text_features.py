"""Stage text_features: encode the mined captions with the frozen text tower (params: model, text_features)."""
import sys

from _common import stage_args

from mlr_core.cache import write_text_feature_cache
from mlr_core.models.clip import WeightsUnavailableError, load_clip
from mlr_core.text.mining import read_mined

args, params = stage_args(__doc__, lambda p: (p.add_argument("--captions", default="data/captions/mined.parquet"),
                                              p.add_argument("--out", default="data/features/captions.parquet")))
mp, tf = params.model, params.text_features
try:
    captions, ids, labels, classes = read_mined(args.captions)
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision)
    write_text_feature_cache(captions, ids, labels, classes, clip, args.out, batch_size=tf.batch_size,
                             shard_size=tf.shard_size, extra_meta={"source": args.captions})
except (WeightsUnavailableError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
print(f"text feature cache: {args.out} ({len(captions)} captions)")
