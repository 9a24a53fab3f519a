"""Stage synthesis_prompts: what the synthesis draws, the mined captions and (synthesis.llm_kinds) the LLM
sentences, cut to a per-class balanced subset (data/synthetic_prompts.parquet). Its own stage so that the
synthesis depends on the prompts it uses: an LLM text change the synthesis does not read gives the same file and
re-runs no synthesis."""
import sys

from _common import stage_args

from mlr_core.synthesis import balanced_subset, load_prompts, write_prompts

stage = stage_args(__doc__, lambda p: (p.add_argument("--captions", default="data/captions/mined.parquet"),
                                       p.add_argument("--sentences", default="data/llm/sentences.parquet"),
                                       p.add_argument("--out", default="data/synthetic_prompts.parquet")),
                   stages={"synthesis_prompts": None})
args, sp = stage.args, stage.params.synthesis
try:
    prompts = balanced_subset(load_prompts(args.captions, args.sentences if sp.llm_kinds else None, sp.llm_kinds),
                              sp.per_class, sp.seed)
except (FileNotFoundError, OSError, ValueError) as e:
    sys.exit(f"error: {e}")
write_prompts(prompts, args.out)
print(f"synthesis prompts: {args.out}: {len(prompts)} ({sum(s == 'caption' for s in prompts.sources)} captions)")
