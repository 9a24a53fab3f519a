"""Stage pretrain_t2i (frozen): train the tinyworld text-to-image model on tinyworld part (a), scenes drawn
from the tinyworld params' seed stream (models/tinyworld-t2i, metrics/pretrain_t2i.json, plots/t2i_samples.png)."""
from _common import stage_args

from mlr_core.data.tinyworld import sample_scenes
from mlr_core.models.t2i_pretrain import pretrain_t2i

stage = stage_args(__doc__, lambda p: (p.add_argument("--out", default="models/tinyworld-t2i"),
                                       p.add_argument("--log", default="metrics/pretrain_t2i.json"),
                                       p.add_argument("--grid", default="plots/t2i_samples.png")),
                   stages={"pretrain_t2i": None})
args, tw, tp = stage.args, stage.params.tinyworld, stage.params.t2i_pretrain
scenes = sample_scenes(tp.n_scenes, tw.seed, "pretrain", tw.min_objects, tw.max_objects)
summary = pretrain_t2i(scenes, args.out, args.log, args.grid, tp)
print(f"pipeline: {args.out}; held-out CLIP zero-shot mAP synthetic/real {summary['heldout_zero_shot_mAP']}")
