"""Stage train_t2i_pal@<seed>: T2I-PAL prompts + prototype adapter from cached caption features and
synthetic-image features, one seed (data/prompts/t2i_pal_s<seed>.safetensors, plots/train/t2i_pal_s<seed>.json)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError
from mlr_core.io import atomic_write_json
from mlr_core.methods.t2i_pal import PalConfig, train_t2i_pal
from mlr_core.models.clip import load_clip
from mlr_core.train import OptimConfig

stage = stage_args(__doc__, lambda p: (p.add_argument("--captions", default="data/features/captions.parquet"),
                                       p.add_argument("--images", default="data/features/synthetic.parquet")),
                   stages={"train_t2i_pal": lambda p: p.t2i_pal.seeds})
args, params, seed = stage.args, stage.params, stage.item
mp, tp = params.model, params.t2i_pal
name = f"t2i_pal_s{seed}"
optim = OptimConfig.from_section(tp)
cfg = PalConfig(n_ctx=tp.n_ctx, class_specific=tp.class_specific, adapter=tp.adapter, alpha=tp.alpha, beta=tp.beta,
                tau=tp.tau, scale=tp.scale)
try:
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision)
    log = train_t2i_pal(clip, args.captions, args.images, f"data/prompts/{name}.safetensors", cfg=cfg,
                        train_on=tp.train_on, gamma=tp.gamma, margin=tp.margin, optim=optim, seed=seed)
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
atomic_write_json(f"plots/train/{name}.json", log)
print(f"T2I-PAL: data/prompts/{name}.safetensors; last epoch {log[-1]}")
