"""Stage train_t2i_pal: T2I-PAL prompts + prototype adapter from cached caption features and synthetic-image
features, every run of t2i_pal.runs (data/prompts/t2i_pal/<run>.safetensors, plots/train/t2i_pal/<run>.json)."""
from _common import stage_args
from _training import train_every_run

from mlr_core.methods.t2i_pal import train_runs

stage = stage_args(__doc__, lambda p: (p.add_argument("--captions", default="data/features/captions.parquet"),
                                       p.add_argument("--images", default="data/features/synthetic.parquet")),
                   stages={"train_t2i_pal": None})
train_every_run(stage, "t2i_pal", lambda clip: train_runs(clip, stage.params, caption_features=stage.args.captions,
                                                          image_features=stage.args.images))
