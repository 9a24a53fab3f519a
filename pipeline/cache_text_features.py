"""Stage text_features (the mined captions) and llm_text_features (the LLM sentences): encode sentences with
the frozen text tower into a Parquet feature cache."""
import sys

from _common import stage_args

from mlr_core.cache import write_text_feature_cache
from mlr_core.models.clip import WeightsUnavailableError, load_clip
from mlr_core.text.mining import read_mined

stage = stage_args(__doc__, lambda p: (p.add_argument("--captions", required=True, help="a mined-captions Parquet"),
                                       p.add_argument("--out", required=True)),
                   stages={"text_features": None, "llm_text_features": None})
args, params = stage.args, stage.params
mp, tf = params.model, params.text_features
try:
    captions, ids, labels, classes = read_mined(args.captions)
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision)
    write_text_feature_cache(captions, ids, labels, classes, clip, args.out, batch_size=tf.batch_size,
                             shard_size=tf.shard_size, extra_meta={"source": args.captions})
except (WeightsUnavailableError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
print(f"text feature cache: {args.out} ({len(captions)} sentences)")
