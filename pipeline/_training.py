"""What the training stage scripts share: the params keys their worker processes read, traced like the stage's
own (:func:`trace_worker_reads`), and for the text-side ones (train_prompts, train_datafree, train_t2i_pal) the
frozen CLIP from params, every run of the method trained, one line per run; a bad input ends the stage in one
line."""
from __future__ import annotations

import sys
from typing import Callable

from mlr_core.cache import CacheMismatchError
from mlr_core.models.clip import load_clip
from mlr_core.parallel import share_with_workers


def trace_worker_reads(stage) -> None:
    """The runs' worker processes (mlr_core.parallel) read params too: their keys join the stage's trace."""
    share_with_workers(lambda: set(stage.reads), stage.reads.update)


def train_every_run(stage, name: str, train: Callable) -> None:
    """``train(clip)`` returns {run: FitResult}; each run's kept step and validation signal are printed."""
    trace_worker_reads(stage)
    mp = stage.params.model
    try:
        clip = load_clip(mp.arch, mp.pretrained, mp.device, mp.precision)
        results = train(clip)
    except (CacheMismatchError, FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    for run, r in results.items():
        print(f"{name} {run}: kept step {r.selected_step} ({r.signal} {r.selected_value})")
