"""Stage train_prompts@<tai, tai_dpt>: TaI / TaI-DPT prompts from cached caption features, every run of
tai_dpt.runs (data/prompts/<variant>/<run>.safetensors, plots/train/<variant>/<run>.json)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError
from mlr_core.methods.tai_dpt import train_runs
from mlr_core.models.clip import load_clip

stage = stage_args(__doc__, lambda p: p.add_argument("--captions", default="data/features/captions.parquet"),
                   stages={"train_prompts": lambda p: p.tai_dpt.variants})
args, params, variant, mp = stage.args, stage.params, stage.item, stage.params.model
try:
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision)
    results = train_runs(variant, clip, params, caption_features=args.captions)
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
for run, r in results.items():
    print(f"{variant} {run}: kept step {r.selected_step} ({r.signal} {r.selected_value})")
