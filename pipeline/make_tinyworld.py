"""Stage tinyworld: generate the embedded synthetic benchmark (params: tinyworld)."""
import json

from _common import stage_args

from mlr_core.data.tinyworld import write_tinyworld

args, params = stage_args(__doc__, lambda p: p.add_argument("--out", default="data/tinyworld"))
summary = write_tinyworld(args.out, **params.tinyworld.model_dump())
print(json.dumps(summary, indent=2))
