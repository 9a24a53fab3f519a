"""Stage train_datafree: hierarchical prompts from the LLM sentences' text features
(data/prompts/datafree.safetensors, plots/train/datafree.json)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError
from mlr_core.io import atomic_write_json
from mlr_core.methods.datafree import HierarchyConfig, train_datafree
from mlr_core.models.clip import load_clip
from mlr_core.train import OptimConfig

stage = stage_args(__doc__, lambda p: (p.add_argument("--features", default="data/features/llm_sentences.parquet"),
                                       p.add_argument("--llm-dir", default="data/llm"),
                                       p.add_argument("--out", default="data/prompts/datafree.safetensors")),
                   stages={"train_datafree": None})
args, params = stage.args, stage.params
mp, dp = params.model, params.datafree
optim = OptimConfig.from_section(dp, schedule="step", milestones=tuple(dp.milestones))
cfg = HierarchyConfig(layout=dp.layout, n_shared=dp.n_shared, n_partial=tuple(dp.n_partial), n_specific=dp.n_specific,
                      use_local=dp.use_local)
try:
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision)
    log = train_datafree(clip, args.features, f"{args.llm_dir}/sentences.parquet", f"{args.llm_dir}/subgroups.json",
                         args.out, cfg=cfg, kinds=dp.kinds, optim=optim, margin=dp.margin, scale=dp.scale,
                         text_temperature=dp.text_temperature, order_weight=dp.order_weight,
                         order_temperature=dp.order_temperature, hand_template=dp.hand_template,
                         heldout_fraction=dp.heldout_fraction, seed=dp.seed)
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
atomic_write_json("plots/train/datafree.json", log)
print(f"prompts: {args.out}; last epoch {log[-1]}")
