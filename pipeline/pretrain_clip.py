"""Stage pretrain_clip (frozen): train the tinyworld CLIP on tinyworld part (a), scenes drawn from the
tinyworld params' seed stream and rendered in memory (models/tinyworld-RN.safetensors, metrics/pretrain_clip.json)."""
from _common import stage_args

from mlr_core.data.tinyworld import sample_scenes
from mlr_core.models.pretrain import pretrain_clip

stage = stage_args(__doc__, lambda p: (p.add_argument("--out", default="models/tinyworld-RN.safetensors"),
                                       p.add_argument("--log", default="metrics/pretrain_clip.json")),
                   stages={"pretrain_clip": None})
args, tw = stage.args, stage.params.tinyworld
scenes = sample_scenes(tw.n_pretrain, tw.seed, "pretrain", tw.min_objects, tw.max_objects)
summary = pretrain_clip(scenes, args.out, args.log, image_size=tw.image_size, **stage.params.clip_pretrain.model_dump())
print(f"checkpoint: {args.out}; held-out zero-shot mAP {summary['final_zero_shot_mAP_heldout']}")
