"""Stage pretrain_clip (frozen): train the tinyworld CLIP on part (a) (params: clip_pretrain, tinyworld.image_size)."""
from _common import stage_args

from mlr_core.models.pretrain import pretrain_clip

args, params = stage_args(__doc__, lambda p: (
    p.add_argument("--scenes", default="data/tinyworld/pretrain/scenes.jsonl"),
    p.add_argument("--out", default="models/tinyworld-RN.safetensors"),
    p.add_argument("--log", default="metrics/pretrain_clip.json")))
summary = pretrain_clip(args.scenes, args.out, args.log, image_size=params.tinyworld.image_size,
                        **params.clip_pretrain.model_dump())
print(f"checkpoint: {args.out}; held-out zero-shot mAP {summary['final_zero_shot_mAP_heldout']}")
