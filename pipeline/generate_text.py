"""Stage llm_text: ask the LLM the data-free method's questions; label its sentences with the noun filter
(data/llm/sentences.parquet, data/llm/subgroups.json, metrics/llm_text.json)."""
import sys

from _common import stage_args

from mlr_core.data.datasets import dataset_classes
from mlr_core.data.manifest import DatasetError
from mlr_core.text.llm import LLMUnavailableError, ReplyCache, SamplingConfig, make_backend
from mlr_core.text.llm_text import QuestionCounts, generate_llm_text, load_questions, write_llm_text
from mlr_core.text.mining import load_synonyms

stage = stage_args(__doc__, lambda p: (p.add_argument("--out-dir", default="data/llm"),
                                       p.add_argument("--summary", default="metrics/llm_text.json")),
                   stages={"llm_text": None})
args, lp, ds = stage.args, stage.params.llm, stage.params.dataset
try:
    questions = load_questions(lp.questions)  # bad templates fail before the model loads
    classes = dataset_classes(ds.name, ds.root, classes=ds.classes)
    table = load_synonyms(lp.synonyms, classes)
    backend = make_backend(lp.backend, lp.model, sampling=SamplingConfig(**lp.sampling.model_dump()),
                           gguf_file=lp.gguf_file, batch_size=lp.batch_size, device=lp.device, dtype=lp.dtype,
                           base_url=lp.base_url, api_key_env=lp.api_key_env, concurrency=lp.concurrency,
                           timeout_s=lp.timeout_s, converted_cache=lp.converted_cache)
    rows, subgroups, summary, stats = generate_llm_text(backend, ReplyCache(lp.reply_cache), classes, table,
                                                        questions=questions,
                                                        counts=QuestionCounts(**lp.counts.model_dump()),
                                                        kinds=lp.kinds, seed=lp.seed, max_retries=lp.max_retries)
    summary = {"dataset": {"name": ds.name, "root": ds.root}, **summary}
    write_llm_text(rows, subgroups, summary, classes, sentences_path=f"{args.out_dir}/sentences.parquet",
                   subgroups_path=f"{args.out_dir}/subgroups.json", summary_path=args.summary)
except (DatasetError, LLMUnavailableError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
print(f"LLM text: {summary['kept']} sentences ({summary['per_kind']}), {summary['dropped_no_class']} without a class; "
      f"{stats['replies_generated_now']} replies generated now, {stats['replies_cached']} in the reply cache; "
      f"subgroups: {len(subgroups['coarse'])} coarse, {len(subgroups['fine'])} fine")
