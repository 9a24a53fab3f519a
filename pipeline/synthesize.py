"""Stage synthesize: images from the synthesis prompts (stage synthesis_prompts: mined captions, optionally LLM
sentences) with a local diffusers text-to-image pipeline (data/synthetic, metrics/synthesis.json). Data-parallel under `accelerate launch` /
`torchrun` (see README)."""
import sys
from pathlib import Path

from _common import stage_args

from mlr_core.io import atomic_write_json
from mlr_core.models.t2i import T2IUnavailableError
from mlr_core.shards import launched_processes
from mlr_core.synthesis import SynthesisConfig, load_pipeline, read_prompts, synthesize

stage = stage_args(__doc__, lambda p: (p.add_argument("--prompts", default="data/synthetic_prompts.parquet"),
                                       p.add_argument("--out", default="data/synthetic")),
                   stages={"synthesize": None})
args, sp = stage.args, stage.params.synthesis
cfg = SynthesisConfig(images_per_caption=sp.images_per_caption, resolution=sp.resolution, steps=sp.steps,
                      guidance=sp.guidance, batch_size=sp.batch_size, seed=sp.seed, shard_size=sp.shard_size,
                      max_retries=sp.max_retries)
try:
    processes = launched_processes(sp.device)
    prompts = read_prompts(args.prompts)
    device = str(processes.device) if sp.device == "auto" else sp.device
    pipe = load_pipeline(sp.model, device, sp.dtype, sp.scheduler)
    summary = synthesize(pipe, prompts, args.out, cfg, model=sp.model, processes=processes, workers=sp.workers)
except (T2IUnavailableError, FileNotFoundError, OSError, ValueError) as e:
    sys.exit(f"error: {e}")
if processes.is_main_process:
    atomic_write_json("metrics/synthesis.json", summary)
    print(f"synthetic images: {Path(args.out)}: {summary}")
