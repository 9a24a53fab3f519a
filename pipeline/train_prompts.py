"""Stage train_prompts@<tai, tai_dpt>: TaI / TaI-DPT prompts from cached caption features
(data/prompts/<variant>.safetensors, plots/train/<variant>.json)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError
from mlr_core.io import atomic_write_json
from mlr_core.methods.tai_dpt import train_tai_dpt
from mlr_core.models.clip import load_clip
from mlr_core.train import OptimConfig

stage = stage_args(__doc__, lambda p: p.add_argument("--captions", default="data/features/captions.parquet"),
                   stages={"train_prompts": lambda p: p.tai_dpt.variants})
args, params, variant = stage.args, stage.params, stage.item
mp, tp = params.model, params.tai_dpt
optim = OptimConfig.from_section(tp)
try:
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision)
    log = train_tai_dpt(clip, args.captions, f"data/prompts/{variant}.safetensors", variant=variant,
                        n_ctx=tp.n_ctx, class_specific=tp.class_specific, init=tp.init, optim=optim,
                        margin=tp.margin, scale=tp.scale, text_temperature=tp.text_temperature,
                        heldout_fraction=tp.heldout_fraction, seed=tp.seed)
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
atomic_write_json(f"plots/train/{variant}.json", log)
print(f"prompts: data/prompts/{variant}.safetensors; last epoch {log[-1]}")
