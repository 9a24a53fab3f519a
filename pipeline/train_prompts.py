"""Stage train_prompts@<tai, tai_dpt>: TaI / TaI-DPT prompts from cached caption features, every run of
tai_dpt.runs (data/prompts/<variant>/<run>.safetensors, plots/train/<variant>/<run>.json)."""
from _common import stage_args
from _training import train_every_run

from mlr_core.methods.tai_dpt import train_runs

stage = stage_args(__doc__, lambda p: p.add_argument("--captions", default="data/features/captions.parquet"),
                   stages={"train_prompts": lambda p: p.tai_dpt.variants})
train_every_run(stage, stage.item,
                lambda clip: train_runs(stage.item, clip, stage.params, caption_features=stage.args.captions))
