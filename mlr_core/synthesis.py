"""Synthetic training images from captions with any diffusers text-to-image pipeline (T2I-PAL's data).

Prompts are the mined captions (and, where params say so, the LLM stage's scene sentences); each prompt
gets ``images_per_caption`` images. Image ``k`` of caption ``id`` is drawn from its own generator seeded by
:func:`image_seed` ``(seed, id, k, attempt)``, so any image can be regenerated alone and reruns are
bit-identical on the same device and batch size. An image the pipeline's safety checker blanked (all
black) or that failed to decode (non-finite pixels, e.g. an fp16 VAE overflow) is regenerated with the
next attempt's seed, up to ``max_retries`` times, then dropped; both are counted.

Output, one folder (``out_dir``), written as a whole once complete:

* ``images/<shard>/<caption id>_<k>.png``;
* ``manifest.parquet``: caption_id, caption, source, index, attempt, seed, path, labels (C int8),
  schema metadata ``classes`` (the mined-captions convention);
* ``manifest.csv`` + ``classes.txt``: the generic dataset format (:mod:`mlr_core.data.manifest`, every row
  split ``trainval``), so the feature-cache stage encodes the synthetic set like any benchmark;
* ``summary.json``: counts (no timings: the folder is the same on every machine; throughput is printed);
  ``state.json``: the model, config and prompts (ids, texts, label rows) it was made from (a rerun with the same
  state returns at once).

Work is split in shards of ``shard_size`` captions, done in ``<out_dir>.partial/``; a shard is finished
when its Parquet file exists (written atomically after its images), so a killed run resumes at the first
missing shard; a shard whose prompts changed meanwhile (a text or a label row: the noun filter re-run) is
redone, the others kept. Shard ``k`` belongs to process ``k % world_size`` (``accelerate launch`` / ``torchrun``), so
processes never collide and the result does not depend on their number.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from tqdm import tqdm

from mlr_core.data.manifest import write_manifest_folder
from mlr_core.io import atomic_path, atomic_write_json, replace_dir
from mlr_core.parallel import one_thread
from mlr_core.shards import ShardedWork

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Prompts:
    """Prompts with stable ids and multi-label targets (1 / 0 / IGNORE)."""

    ids: list[str]
    texts: list[str]
    sources: list[str]
    labels: np.ndarray  # (N, C) int8
    classes: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, rows: Sequence[int]) -> Prompts:
        rows = list(rows)
        return Prompts([self.ids[i] for i in rows], [self.texts[i] for i in rows], [self.sources[i] for i in rows],
                       self.labels[rows], self.classes)


def load_prompts(captions: str | Path, sentences: str | Path | None = None,
                 sentence_kinds: Sequence[str] = ("relationship",)) -> Prompts:
    """The mined captions (ids ``cap<i>``, as the text feature cache names them) followed by the LLM
    stage's sentences of the given ``kind`` (ids ``llm<i>``, ``i`` the row in that file)."""
    from mlr_core.text.mining import read_mined

    texts, ids, labels, classes = read_mined(captions)
    prompts = Prompts(ids, texts, ["caption"] * len(ids), labels, classes)
    if sentences is None:
        return prompts
    s_texts, _, s_labels, s_classes = read_mined(sentences)
    if s_classes != classes:
        raise ValueError(f"{sentences}: classes {s_classes[:5]}... differ from {captions}'s {classes[:5]}...")
    kinds = pq.read_table(sentences, columns=["kind"]).column("kind").to_pylist()
    keep = [i for i, k in enumerate(kinds) if k in set(sentence_kinds)]
    return Prompts(ids + [f"llm{i}" for i in keep], texts + [s_texts[i] for i in keep],
                   prompts.sources + [f"llm:{kinds[i]}" for i in keep],
                   np.concatenate([labels, s_labels[keep]]), classes)


def write_prompts(prompts: Prompts, path: str | Path) -> None:
    """The prompts of a synthesis run as one Parquet file (id, text, source, labels; ``classes`` in the schema
    metadata): the output of stage ``synthesis_prompts``, so the synthesis depends on what it draws and nothing
    else (an LLM text change it does not use leaves this file, and so the images, as they are)."""
    from mlr_core.io import atomic_path

    table = pa.table({
        "id": pa.array(prompts.ids, pa.string()), "text": pa.array(prompts.texts, pa.string()),
        "source": pa.array(prompts.sources, pa.string()),
        "labels": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(prompts.labels, np.int8).ravel()),
                                                    len(prompts.classes))})
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata({b"classes": json.dumps(prompts.classes).encode()}), tmp)


def read_prompts(path: str | Path) -> Prompts:
    """What :func:`write_prompts` wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synthesis prompts (run the synthesis_prompts stage)")
    t = pq.read_table(path)
    n = t.num_rows
    labels = t.column("labels").combine_chunks().values.to_numpy().reshape(n, -1).astype(np.int8)
    return Prompts(t.column("id").to_pylist(), t.column("text").to_pylist(), t.column("source").to_pylist(), labels,
                   json.loads(t.schema.metadata[b"classes"]))


def balanced_subset(prompts: Prompts, per_class: int | None, seed: int) -> Prompts:
    """All prompts (``per_class=None``) or, per class, the first ``per_class`` prompts holding it in a
    seeded shuffle (their union, in the original order)."""
    if per_class is None:
        return prompts
    order = np.random.default_rng(seed).permutation(len(prompts))
    chosen: set[int] = set()
    for c in range(len(prompts.classes)):
        chosen.update(order[prompts.labels[order, c] == 1][:per_class].tolist())
    return prompts.select(sorted(chosen))


def image_seed(seed: int, prompt_id: str, index: int, attempt: int = 0) -> int:
    """The generator seed of image ``index`` of prompt ``prompt_id`` (retry ``attempt``): a hash, so it
    depends on nothing but these four values."""
    digest = hashlib.sha256(f"{seed}/{prompt_id}/{index}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def load_pipeline(model: str, device: str = "cpu", dtype: str = "fp32", scheduler: str | None = None):
    """Any diffusers text-to-image pipeline by Hugging Face id or local folder
    (:func:`mlr_core.models.t2i.load_t2i`), optionally with another scheduler class (a diffusers name, e.g.
    ``EulerAncestralDiscreteScheduler``) built from its config."""
    import diffusers

    from mlr_core.models.t2i import load_t2i

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    pipe = load_t2i(model, device, dtype)
    if scheduler:
        cls = getattr(diffusers, scheduler, None)
        if cls is None or not hasattr(cls, "from_config"):
            raise ValueError(f"unknown diffusers scheduler {scheduler!r}")
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], seeds: list[int], *, steps: int, guidance: float,
             resolution: int | None) -> tuple[np.ndarray, list[bool]]:
    """One pipeline call: (B, H, W, 3) float images in [0, 1] and, per image, whether it is unusable
    (blanked by a safety checker, all black, or non-finite)."""
    device = getattr(pipe, "device", torch.device("cpu"))
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    size = {} if resolution is None else {"height": resolution, "width": resolution}
    out = pipe(prompt=prompts, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
               output_type="np", **size)
    images = np.asarray(out.images, dtype=np.float32)
    flagged = getattr(out, "nsfw_content_detected", None) or [False] * len(prompts)
    bad = [bool(f) or not np.isfinite(im).all() or float(np.nan_to_num(im).max()) <= 1.0 / 255
           for im, f in zip(images, flagged)]
    return images, bad


def _to_png(image: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(tmp, format="PNG")


@dataclass(frozen=True)
class SynthesisConfig:
    """What determines the synthetic images besides the pipeline and the prompts (the ``synthesis`` params)."""

    images_per_caption: int
    resolution: int | None
    steps: int
    guidance: float
    batch_size: int
    seed: int
    shard_size: int  # captions per shard
    max_retries: int


def _generate_batch(pipe, prompts: Prompts, batch: list[tuple[int, int, int]], cfg: SynthesisConfig):
    """One pipeline call for ``batch`` ((row, index, attempt) each): (seeds, images, unusable flags)."""
    seeds = [image_seed(cfg.seed, prompts.ids[r], k, a) for r, k, a in batch]
    images, bad = generate(pipe, [prompts.texts[r] for r, _, _ in batch], seeds, steps=cfg.steps,
                           guidance=cfg.guidance, resolution=cfg.resolution)
    return seeds, images, bad


def _take(batch, generated, queue: deque, shard: int, work: Path, prompts: Prompts, cfg: SynthesisConfig,
          rows: list, counts: dict, bar) -> None:
    """Write a generated batch's usable images; an unusable one goes back to the front of ``queue`` with the
    next attempt's seed (at most ``max_retries`` times), then counts as dropped."""
    for (r, k, a), s, image, is_bad in zip(batch, *generated):
        if is_bad:
            if a < cfg.max_retries:
                counts["regenerated"] += 1
                queue.appendleft((r, k, a + 1))
            else:
                counts["dropped"] += 1
                bar.update(1)
            continue
        path = f"images/{shard:05d}/{prompts.ids[r]}_{k}.png"
        _to_png(image, work / path)
        rows.append((r, k, a, s, path))
        bar.update(1)


def _shard_queue(lo: int, hi: int, cfg: SynthesisConfig) -> deque:
    return deque((r, k, 0) for r in range(lo, hi) for k in range(cfg.images_per_caption))


def _synthesize_shard(pipe, prompts: Prompts, lo: int, hi: int, shard: int, work: Path, cfg: SynthesisConfig,
                      bar, first_pass: list | None = None) -> tuple[pa.Table, dict]:
    """The shard's images, batch after batch from its queue. ``first_pass``: its first batches, generated
    already (in worker processes) as the queue's consecutive chunks; they are taken in order while no image
    was unusable (the queue then stays those chunks), and the rest is generated here from the first batch
    that put a retry in front of the queue: the same calls, so the same images, as generating it all here."""
    queue = _shard_queue(lo, hi, cfg)
    rows, counts = [], {"regenerated": 0, "dropped": 0}
    for generated in first_pass or []:
        if not queue or queue[0][2] != 0:  # a retry leads the queue: the chunks made ahead are not its batches
            break
        batch = [queue.popleft() for _ in range(min(cfg.batch_size, len(queue)))]
        _take(batch, generated, queue, shard, work, prompts, cfg, rows, counts, bar)
    while queue:
        batch = [queue.popleft() for _ in range(min(cfg.batch_size, len(queue)))]
        _take(batch, _generate_batch(pipe, prompts, batch, cfg), queue, shard, work, prompts, cfg, rows, counts, bar)
    rows.sort()
    c = len(prompts.classes)
    table = pa.table({
        "caption_id": pa.array([prompts.ids[r] for r, *_ in rows], pa.string()),
        "caption": pa.array([prompts.texts[r] for r, *_ in rows], pa.string()),
        "source": pa.array([prompts.sources[r] for r, *_ in rows], pa.string()),
        "index": pa.array([k for _, k, *_ in rows], pa.int32()),
        "attempt": pa.array([a for _, _, a, *_ in rows], pa.int32()),
        "seed": pa.array([s for *_, s, _ in rows], pa.int64()),
        "path": pa.array([p for *_, p in rows], pa.string()),
        "labels": pa.FixedSizeListArray.from_arrays(
            pa.array(prompts.labels[[r for r, *_ in rows]].astype(np.int8).reshape(-1), pa.int8()), c),
    })
    return table.replace_schema_metadata({b"counts": json.dumps(counts).encode()}), counts


def _first_pass(pipe, prompts: Prompts, lo: int, hi: int, cfg: SynthesisConfig, workers: int | str,
                device: str) -> list | None:
    """Every batch of a shard as if no image were unusable (its queue in consecutive chunks), generated in CPU
    worker processes on one thread each (:func:`mlr_core.parallel.map_runs`): the batches' (seeds, images,
    flags). None where one process does it all (a GPU, one core, ``workers: 1``). On 2 cores two one-thread
    processes make 1.49 images/s each against 2.64 for one two-thread process; the images are the same for any
    number of workers (tests/test_synthesis.py)."""
    from mlr_core.parallel import map_runs, resolve_workers

    chunks = _chunks(list(_shard_queue(lo, hi, cfg)), cfg.batch_size)
    if resolve_workers(workers, len(chunks), device) <= 1:
        return None
    return map_runs(lambda chunk: _generate_batch(pipe, prompts, chunk, cfg), chunks, workers=workers,
                    device=device, desc="synthesize", progress=False)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def synthesize(pipe, prompts: Prompts, out_dir: str | Path, cfg: SynthesisConfig, *, model: str = "",
               processes=None, workers: int | str = 1) -> dict:
    """Generate the images of ``prompts`` into ``out_dir`` (see the module docstring); returns the summary.

    ``processes`` is an ``accelerate.PartialState`` (``mlr_core.shards.launched_processes``) for data-parallel
    runs; process ``r`` of ``n`` does shards ``r, r + n, ...`` and the main process assembles the folder.
    ``workers`` (``synthesis.workers``): on a CPU in one process, the batches are generated in this many worker
    processes (``auto``: one per core), each image on one thread; the images are the same for any count.
    """
    out_dir = Path(out_dir)

    def prompts_digest(lo: int, hi: int) -> str:
        # what a shard's rows are made of: each prompt's id and text (the images) and label row (the manifest)
        h = hashlib.sha256()
        for i in range(lo, hi):
            h.update(f"{prompts.ids[i]}\t{prompts.texts[i]}\0".encode()
                     + np.ascontiguousarray(prompts.labels[i], dtype=np.int8).tobytes())
        return h.hexdigest()

    # the work folder is kept over a change of some prompts (their shards are redone: shard_inputs); a finished
    # folder is up to date only for the very same prompts, texts and labels
    work_state = {"model": model, "config": cfg.__dict__, "classes": prompts.classes, "n": len(prompts)}
    state = {**work_state, "prompts": prompts_digest(0, len(prompts))[:16]}
    done = out_dir / "state.json"
    if done.is_file() and json.loads(done.read_text()) == state and (out_dir / "summary.json").is_file():
        print(f"synthesis: {out_dir} is up to date")
        return json.loads((out_dir / "summary.json").read_text())
    work = ShardedWork(out_dir.with_name(out_dir.name + ".partial"), work_state, n_items=len(prompts),
                       shard_size=cfg.shard_size, processes=processes, what="synthesis",
                       shard_inputs=prompts_digest)
    processes = work.processes
    todo = work.todo()
    n_todo = sum(hi - lo for lo, hi in map(work.bounds, todo)) * cfg.images_per_caption
    bar = tqdm(total=n_todo, desc=f"synthesize (process {processes.process_index})", unit="img")
    start = time.perf_counter()
    device = str(getattr(pipe, "device", "cpu"))
    # On a CPU every image is computed on one thread, in a worker or here: ATen splits some reductions by thread
    # count (one pixel of 415 images changed between 1 and 2 threads), so the images do not depend on the cores
    with one_thread(device):
        for k in todo:
            one_process = processes.num_processes == 1
            first = _first_pass(pipe, prompts, *work.bounds(k), cfg, workers, device) if one_process else None
            table, _ = _synthesize_shard(pipe, prompts, *work.bounds(k), k, work.dir, cfg, bar, first_pass=first)
            work.write(k, table)
    bar.close()
    seconds = time.perf_counter() - start
    if todo:
        print(f"synthesis (process {processes.process_index}): {n_todo} images in {seconds:.1f} s, "
              f"{n_todo / seconds:.2f} images/s")
    processes.wait_for_everyone()
    summary = None
    if processes.is_main_process:
        summary = _assemble(work, out_dir, prompts.classes, state)
    processes.wait_for_everyone()
    return summary or json.loads((out_dir / "summary.json").read_text())


def _assemble(sharded: ShardedWork, out_dir: Path, classes: list[str], state: dict) -> dict:
    shards, work = sharded.shards(), sharded.dir
    tables = [pq.read_table(s) for s in shards]
    counts = {"regenerated": 0, "dropped": 0}
    for t in tables:
        for key, v in json.loads(t.schema.metadata[b"counts"]).items():
            counts[key] += v
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    table = table.replace_schema_metadata({b"classes": json.dumps(classes).encode()})
    summary = {"model": state["model"], "prompts": state["n"], "images": table.num_rows, **counts,
               "images_per_caption": state["config"]["images_per_caption"], "steps": state["config"]["steps"]}
    with atomic_path(work / "manifest.parquet") as tmp:
        pq.write_table(table, tmp)
    labels = table.column("labels").combine_chunks().values.to_numpy().reshape(table.num_rows, -1)
    write_manifest_folder(work, table.column("path").to_pylist(), ["trainval"] * table.num_rows, labels, classes)
    sharded.remove_shards()
    atomic_write_json(work / "state.json", state)  # the work folder's own omits the prompts' digest
    atomic_write_json(work / "summary.json", summary)
    replace_dir(work, out_dir)
    sharded.done()
    return summary
