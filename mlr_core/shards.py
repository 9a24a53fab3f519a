"""Resumable, data-parallel, atomic work in shards: the one machinery behind the feature caches
(:mod:`mlr_core.cache`) and the synthetic images (:mod:`mlr_core.synthesis`).

Items ``0..n-1`` are cut into shards of ``shard_size``; process ``r`` of ``p`` does shards ``r, r + p, ...``
and writes each one atomically into a work folder (``<output>.partial``) beside the output. A killed run
resumes with the shards already on disk, but only if the work folder's ``state.json`` (what identifies the
inputs: model, item list, config) equals the new run's: shards of other inputs are never mixed in. With
``shard_inputs`` (a digest of what determines shard ``k``'s bytes: e.g. its items' labels and file contents),
each shard is also kept only if the digest written beside it equals the digest of today's inputs, so an input
that changed under the same item list (a relabelled manifest, an edited image) is redone. A work folder that
is discarded says so in one line. The caller assembles the output from the shards once every process is done,
then calls :meth:`ShardedWork.done`. One run at a time writes an output: a second one (another ``dvc repro`` or a
direct run of the stage script) is refused at once, naming the output, while the first holds ``<work>.lock``.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from pathlib import Path
    >>> work = ShardedWork(Path(tempfile.mkdtemp()) / "out.partial", {"model": "m"}, n_items=5, shard_size=2,
    ...                    what="example")
    >>> [work.bounds(k) for k in work.todo()]
    [(0, 2), (2, 4), (4, 5)]
    >>> work.write(0, pa.table({"x": [0, 1]}))
    >>> work.todo()  # a second run (same state) resumes
    example: resuming, 1 of 3 shards already done
    [1, 2]
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mlr_core.io import atomic_path, atomic_write_json


class OutputBusyError(ValueError):
    """Another run is writing the same output (a ValueError: every stage script reports it as one line)."""


def _exclusive_lock(path: Path, what: str):
    """An open file holding an exclusive lock on ``path`` (released by the OS if the process dies)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise OutputBusyError(f"{what}: another run is writing {path.with_suffix('')} now (it holds {path}); "
                           f"wait for it to finish") from None
    return handle


class SingleProcess:
    """The processes of a run that is not launched data-parallel: just this one."""
    process_index, num_processes, is_main_process = 0, 1, True

    def wait_for_everyone(self) -> None:
        pass


def launched_processes(device: str = "auto"):
    """The processes of this run as an ``accelerate.PartialState``: one process under ``dvc repro``, all of
    them under ``accelerate launch`` (GPUs, nodes) or ``torchrun`` (CPU processes: pass ``device="cpu"``
    or set ACCELERATE_USE_CPU=1, since accelerate only joins CPU processes when told so)."""
    from accelerate import PartialState  # heavy: only runs that shard work pay for it

    cpu = device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in {"1", "true", "yes"}
    return PartialState(cpu=cpu)


class ShardedWork:
    """The work folder of one sharded run (see the module docstring).

    Creating it (on every process) discards a work folder left by a run with another ``state``, creates the
    folder and its ``state.json`` on the main process, and waits for everyone.
    """

    def __init__(self, work: Path, state: dict, *, n_items: int, shard_size: int, processes=None, what: str,
                 shard_inputs=None):
        self.dir, self.n_items, self.shard_size = Path(work), n_items, shard_size
        self.processes = processes or SingleProcess()
        self.what, self.shard_inputs = what, shard_inputs
        self.n_shards = math.ceil(n_items / shard_size)
        state_file = self.dir / "state.json"
        self._lock = None
        if self.processes.is_main_process:
            self._lock = _exclusive_lock(self.dir.with_name(self.dir.name + ".lock"), what)
            if self.dir.exists() and (not state_file.exists() or json.loads(state_file.read_text()) != state):
                print(f"{what}: discarding {self.dir}, left by a run with other inputs")
                shutil.rmtree(self.dir)  # shards of other inputs must never be mixed in
            self.dir.mkdir(parents=True, exist_ok=True)
            if not state_file.exists():
                atomic_write_json(state_file, state)
        self.processes.wait_for_everyone()

    def shard_path(self, k: int) -> Path:
        return self.dir / f"shard-{k:05d}.parquet"

    def done(self) -> None:
        """After the output is assembled (main process): remove what is left of the work folder and the lock."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
        if self._lock is not None:
            Path(self._lock.name).unlink(missing_ok=True)
            self._lock.close()
            self._lock = None

    def _inputs_path(self, k: int) -> Path:
        return self.dir / f"shard-{k:05d}.inputs"

    def _is_current(self, k: int) -> bool:
        """Shard ``k`` is on disk and (with ``shard_inputs``) was made from today's inputs; a stale one is removed."""
        if not self.shard_path(k).exists():
            return False
        if self.shard_inputs is None:
            return True
        recorded = self._inputs_path(k).read_text() if self._inputs_path(k).exists() else None
        if recorded == self.shard_inputs(*self.bounds(k)):
            return True
        print(f"{self.what}: shard {k} was made from other inputs (labels or file contents changed): redoing it")
        self.shard_path(k).unlink()
        return False

    def bounds(self, k: int) -> tuple[int, int]:
        """Items ``lo:hi`` of shard ``k``."""
        return k * self.shard_size, min(self.n_items, (k + 1) * self.shard_size)

    def todo(self) -> list[int]:
        """This process's shards not yet on disk (says so when it resumes)."""
        p = self.processes
        mine = [k for k in range(self.n_shards) if k % p.num_processes == p.process_index]
        todo = [k for k in mine if not self._is_current(k)]
        if len(todo) < len(mine):
            print(f"{self.what}: resuming, {len(mine) - len(todo)} of {len(mine)} shards already done")
        return todo

    def write(self, k: int, table: pa.Table, **parquet_options) -> None:
        if self.shard_inputs is not None:  # the digest first: a shard never stands on disk without its digest
            with atomic_path(self._inputs_path(k)) as tmp:
                Path(tmp).write_text(self.shard_inputs(*self.bounds(k)))
        with atomic_path(self.shard_path(k)) as tmp:
            pq.write_table(table, tmp, **parquet_options)

    def shards(self) -> list[Path]:
        """Every shard, in index order; an error if one is missing (call on the main process, after
        everyone is done)."""
        paths = [self.shard_path(k) for k in range(self.n_shards)]
        missing = [s.name for s in paths if not s.exists()]
        if missing:
            raise RuntimeError(f"{self.dir}: cannot assemble, shards missing: {missing[:5]}")
        return paths

    def remove_shards(self) -> None:
        """Delete the shards and their digests (what is left of the work folder becomes the output)."""
        for k in range(self.n_shards):
            self.shard_path(k).unlink(missing_ok=True)
            self._inputs_path(k).unlink(missing_ok=True)
