"""Stage pretrain_t2i (frozen): train the tinyworld text-to-image model on part (a) (params: t2i_pretrain)."""
from _common import stage_args

from mlr_core.models.t2i_pretrain import pretrain_t2i

args, params = stage_args(__doc__, lambda p: (
    p.add_argument("--scenes", default="data/tinyworld/pretrain/scenes.jsonl"),
    p.add_argument("--out", default="models/tinyworld-t2i"),
    p.add_argument("--log", default="metrics/pretrain_t2i.json"),
    p.add_argument("--grid", default="plots/t2i_samples.png")))
summary = pretrain_t2i(args.scenes, args.out, args.log, args.grid, **params.t2i_pretrain.model_dump())
print(f"pipeline: {args.out}; held-out CLIP zero-shot mAP synthetic/real {summary['heldout_zero_shot_mAP']}")
