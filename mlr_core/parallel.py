"""The runs of one training stage (seeds, controls, label budgets) in parallel worker processes, with outputs
that do not depend on how many workers there are.

A stage's runs share their inputs and nothing else. On a CPU every run computes on one thread, in a worker or
in the stage's own process alike: ATen splits its reductions by thread count, so a run's last bits depend on it
(MKL's are pinned: :mod:`mlr_core`), and at one thread they are fixed. ``training.workers`` (a runtime knob,
not tracked) therefore changes how long a stage takes, never a byte it writes. The small matrices of prompt
training do not keep two threads busy: on 2 cores two one-thread runs at once took 10.8 s where one after the
other at two threads took 15.8 s (TaI-DPT, 120 steps each).

Workers are forked from the stage's process once it has loaded the model and the data (shared copy-on-write,
nothing to pickle but the run names and the results); a run's exception is raised in the stage. What a worker
records besides its result (the pipeline's trace of the params keys read) comes back through
:func:`share_with_workers`. On a GPU the runs go one after the other in the stage's process (a CUDA context
does not survive a fork).

Example:
    >>> map_runs(lambda x: x * x, [1, 2, 3], workers=1, device="cpu", desc="squares")
    [1, 4, 9]
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from tqdm import tqdm

_WORKER_STATE: list[tuple[Callable[[], Any], Callable[[Any], None]]] = []
_TASK: Callable | None = None  # the function of the running map_runs, inherited by its forked workers


def share_with_workers(collect: Callable[[], Any], merge: Callable[[Any], None]) -> None:
    """After each run in a worker, ``collect()`` is sent back with the result and ``merge(value)`` is called
    with it in the stage's process."""
    _WORKER_STATE.append((collect, merge))


def resolve_workers(workers: int | str, n_runs: int, device: str) -> int:
    """``auto``: one worker per CPU core this process may use when the runs divide evenly among them, else every
    run at once (at most 4 per core), so the cores stay busy to the end instead of one run finishing alone: 3
    runs on 2 cores take about 1.5 runs' time, not 2 (TaI, 3 seeds: 27.7 s against 30.3 s for the stage with
    its start; the same bytes). 1 on a GPU."""
    if not str(device).startswith("cpu") or n_runs <= 1:
        return 1
    if workers == "auto":
        cores = len(os.sched_getaffinity(0))
        return max(1, cores if n_runs % cores == 0 else min(n_runs, 4 * cores))
    return max(1, min(int(workers), n_runs))


def map_runs(fn: Callable[[Any], Any], items: Sequence, *, workers: int | str, device: str, desc: str,
             progress: bool = True) -> list:
    """``[fn(item) for item in items]``, each on one CPU thread, in up to ``workers`` forked processes."""
    global _TASK
    n = resolve_workers(workers, len(items), device)
    bar = dict(total=len(items), desc=desc, unit="run", disable=not progress)
    if n == 1:
        with one_thread(device):
            return [fn(item) for item in tqdm(items, **bar)]
    import multiprocessing

    _TASK = fn
    try:
        with multiprocessing.get_context("fork").Pool(n, initializer=_init_worker) as pool:
            out = []
            for result, state in tqdm(pool.imap(_run_in_worker, items), **bar):
                for (_, merge), value in zip(_WORKER_STATE, state):
                    merge(value)
                out.append(result)
            pool.close()
            pool.join()
        return out
    finally:
        _TASK = None


class one_thread:
    """torch on one thread for the block (CPU work), the previous count restored after: what makes a CPU
    result the same on a machine with any number of cores."""

    def __init__(self, device: str):
        self.cpu = str(device).startswith("cpu")

    def __enter__(self):
        if self.cpu:
            import torch

            self.before = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.cpu:
            import torch

            torch.set_num_threads(self.before)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run_in_worker(item):
    result = _TASK(item)
    return result, [collect() for collect, _ in _WORKER_STATE]
