"""Stage tinyworld: generate the embedded synthetic benchmark (data/tinyworld: the caption corpus and the
labelled benchmark; the pretraining scenes are drawn by the pretraining stages themselves)."""
import json

from _common import stage_args

from mlr_core.data.tinyworld import write_tinyworld

stage = stage_args(__doc__, lambda p: p.add_argument("--out", default="data/tinyworld"), stages={"tinyworld": None})
tw = stage.params.tinyworld
summary = write_tinyworld(stage.args.out, seed=tw.seed, image_size=tw.image_size, min_objects=tw.min_objects,
                          max_objects=tw.max_objects, n_corpus=tw.n_corpus, captions_per_scene=tw.captions_per_scene,
                          n_trainval=tw.n_trainval, n_test=tw.n_test)
print(json.dumps(summary, indent=2))
