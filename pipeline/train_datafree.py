"""Stage train_datafree: hierarchical prompts from the LLM sentences' text features, every run of datafree.runs
(data/prompts/datafree/<run>.safetensors, plots/train/datafree/<run>.json)."""
import sys

from _common import stage_args

from mlr_core.cache import CacheMismatchError
from mlr_core.methods.datafree import train_runs
from mlr_core.models.clip import load_clip

stage = stage_args(__doc__, lambda p: (p.add_argument("--features", default="data/features/llm_sentences.parquet"),
                                       p.add_argument("--llm-dir", default="data/llm")),
                   stages={"train_datafree": None})
args, params, mp = stage.args, stage.params, stage.params.model
try:
    clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision)
    results = train_runs(clip, params, sentence_features=args.features, llm_dir=args.llm_dir)
except (CacheMismatchError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
for run, r in results.items():
    print(f"datafree {run}: kept step {r.selected_step} ({r.signal} {r.selected_value})")
