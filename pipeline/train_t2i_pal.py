"""Stage train_t2i_pal: T2I-PAL prompts + prototype adapter from cached caption features and synthetic-image
features, every run of t2i_pal.runs (data/prompts/t2i_pal/<run>.safetensors, plots/train/t2i_pal/<run>.json)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError
from mlr_core.methods.t2i_pal import train_runs
from mlr_core.models.clip import load_clip

stage = stage_args(__doc__, lambda p: (p.add_argument("--captions", default="data/features/captions.parquet"),
                                       p.add_argument("--images", default="data/features/synthetic.parquet")),
                   stages={"train_t2i_pal": None})
args, params, mp = stage.args, stage.params, stage.params.model
try:
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision)
    results = train_runs(clip, params, caption_features=args.captions, image_features=args.images)
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
for run, r in results.items():
    print(f"t2i_pal {run}: kept step {r.selected_step} ({r.signal} {r.selected_value})")
