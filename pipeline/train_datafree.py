"""Stage train_datafree: hierarchical prompts from the LLM sentences' text features, every run of datafree.runs
(data/prompts/datafree/<run>.safetensors, plots/train/datafree/<run>.json)."""
from _common import stage_args
from _training import train_every_run

from mlr_core.methods.datafree import train_runs

stage = stage_args(__doc__, lambda p: (p.add_argument("--features", default="data/features/llm_sentences.parquet"),
                                       p.add_argument("--llm-dir", default="data/llm")),
                   stages={"train_datafree": None})
train_every_run(stage, "datafree", lambda clip: train_runs(clip, stage.params, sentence_features=stage.args.features,
                                                           llm_dir=stage.args.llm_dir))
