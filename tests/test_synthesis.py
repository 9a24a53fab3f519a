"""Synthesis stage: seed derivation, resume after a kill, the all-black retry, the two-process split and
the synthetic folder read back as a dataset by the feature cache."""
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from mlr_core.synthesis import (Prompts, SynthesisConfig, balanced_subset, generate, image_seed, load_pipeline,
                                load_prompts, synthesize)

CLASSES = ["circle", "square", "star"]
TEXTS = ["a red circle", "a blue square", "a star and a circle", "a green star", "a square", "a circle",
         "two stars", "a square and a star"]
LABELS = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 1]], np.int8)
CFG = SynthesisConfig(images_per_caption=2, resolution=16, steps=2, guidance=2.0, batch_size=3, seed=5,
                      shard_size=3, max_retries=2)


def write_tiny_pipeline(path: Path) -> Path:
    """A tiny random StableDiffusionPipeline (CLIP tokenizer from a character-level vocab fixture)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok_dir = path.parent / (path.name + "-tok")
    tok_dir.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz.,")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, **{c: 2 + i for i, c in enumerate(chars)},
             **{c + "</w>": 2 + len(chars) + i for i, c in enumerate(chars)}}
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=32)
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                                        projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=2, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
                        norm_num_groups=4, sample_size=16)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                            scheduler=DDIMScheduler(clip_sample=False), safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    return write_tiny_pipeline(tmp_path_factory.mktemp("t2i") / "pipe")


@pytest.fixture(scope="module")
def pipe(pipe_dir):
    torch.set_num_threads(1)
    return load_pipeline(str(pipe_dir), "cpu", "fp32")


def prompts() -> Prompts:
    return Prompts([f"cap{i}" for i in range(len(TEXTS))], list(TEXTS), ["caption"] * len(TEXTS), LABELS.copy(),
                   list(CLASSES))


class Counting:
    """Wraps a pipeline: counts images asked for; blanks chosen seeds (as a safety checker does); may die."""

    def __init__(self, pipe, blank_seeds=(), die_after_calls=None):
        self.pipe, self.blank, self.die_after, self.calls, self.images = pipe, set(blank_seeds), die_after_calls, 0, 0
        self.device = pipe.device

    def __call__(self, **kw):
        if self.die_after is not None and self.calls >= self.die_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.images += len(kw["prompt"])
        out = self.pipe(**kw)
        flags = [g.initial_seed() in self.blank for g in kw["generator"]]
        for i, f in enumerate(flags):
            if f:
                out.images[i] = 0.0
        out.nsfw_content_detected = flags
        return out


def read_manifest_table(d: Path) -> pa.Table:
    return pq.read_table(d / "manifest.parquet")


def test_image_seed_depends_only_on_its_inputs():
    s = image_seed(0, "cap3", 1)
    assert s == image_seed(0, "cap3", 1) and 0 <= s < 2 ** 63
    others = {image_seed(0, "cap3", 0), image_seed(0, "cap4", 1), image_seed(1, "cap3", 1), image_seed(0, "cap3", 1, 1)}
    assert s not in others and len(others) == 4


def test_run_manifest_images_and_single_image_regeneration(pipe, tmp_path):
    out = tmp_path / "syn"
    summary = synthesize(pipe, prompts(), out, CFG, model="tiny")
    t = read_manifest_table(out)
    assert summary["images"] == t.num_rows == 16 and summary["dropped"] == summary["regenerated"] == 0
    assert t.column("caption_id").to_pylist()[:4] == ["cap0", "cap0", "cap1", "cap1"]
    assert json.loads(t.schema.metadata[b"classes"]) == CLASSES
    labels = t.column("labels").combine_chunks().values.to_numpy().reshape(-1, 3)
    assert np.array_equal(labels, np.repeat(LABELS, 2, axis=0))
    assert not (out.parent / "syn.partial").exists()
    # any image alone, from its derived seed, is the one the batched run wrote
    row = 7  # cap3, image 1
    assert t.column("caption_id")[row].as_py() == "cap3" and t.column("index")[row].as_py() == 1
    seed = t.column("seed")[row].as_py()
    assert seed == image_seed(CFG.seed, "cap3", 1)
    alone, bad = generate(pipe, [TEXTS[3]], [seed], steps=CFG.steps, guidance=CFG.guidance, resolution=16)
    written = np.asarray(Image.open(out / t.column("path")[row].as_py()), np.float32) / 255
    assert not bad[0] and np.abs(alone[0] - written).max() <= 1.5 / 255
    # the generic dataset format beside the images
    from mlr_core.data.manifest import read_manifest
    data = read_manifest(out / "manifest.csv", out / "classes.txt")
    assert len(data) == 16 and set(data.splits) == {"trainval"} and np.array_equal(data.targets, labels)


def test_killed_run_resumes_at_the_first_missing_shard(pipe, tmp_path):
    full = tmp_path / "full"
    synthesize(pipe, prompts(), full, CFG, model="tiny")
    out = tmp_path / "resumed"
    dying = Counting(pipe, die_after_calls=2)  # shard 0 = 3 captions x 2 images = 2 calls of 3
    with pytest.raises(KeyboardInterrupt):
        synthesize(dying, prompts(), out, CFG, model="tiny")
    partial = tmp_path / "resumed.partial"
    assert (partial / "shard-00000.parquet").exists() and not (partial / "shard-00001.parquet").exists()
    again = Counting(pipe)
    synthesize(again, prompts(), out, CFG, model="tiny")
    assert again.images == 16 - 6  # shard 0 is not redone
    done = Counting(pipe)
    assert synthesize(done, prompts(), out, CFG, model="tiny")["images"] == 16 and done.images == 0  # up to date
    a, b = read_manifest_table(full), read_manifest_table(out)
    assert a.equals(b)
    for p in a.column("path").to_pylist():
        assert (full / p).read_bytes() == (out / p).read_bytes()  # reruns are bit-identical
    # a finished folder is simply rebuilt from scratch when the config changes (no stale shards)
    changed = SynthesisConfig(**{**CFG.__dict__, "images_per_caption": 1})
    assert synthesize(pipe, prompts(), out, changed, model="tiny")["images"] == 8


def test_black_images_are_regenerated_with_the_next_seed_or_dropped(pipe, tmp_path):
    p = prompts()
    always_black = {image_seed(CFG.seed, "cap2", 0, a) for a in range(CFG.max_retries + 1)}
    once_black = {image_seed(CFG.seed, "cap5", 1, 0)}
    wrapped = Counting(pipe, blank_seeds=always_black | once_black)
    summary = synthesize(wrapped, p, tmp_path / "syn", CFG, model="tiny")
    assert summary["dropped"] == 1 and summary["regenerated"] == CFG.max_retries + 1
    assert summary["images"] == 15 and wrapped.images == 16 + CFG.max_retries + 1
    t = read_manifest_table(tmp_path / "syn").to_pandas()
    assert ((t.caption_id == "cap2") & (t["index"] == 0)).sum() == 0
    retried = t[(t.caption_id == "cap5") & (t["index"] == 1)].iloc[0]
    assert retried.attempt == 1 and retried.seed == image_seed(CFG.seed, "cap5", 1, 1)
    assert (t.attempt == 0).sum() == 14


def test_prompts_from_captions_llm_sentences_and_balanced_subset(tmp_path):
    def write(path, texts, labels, kinds=None):
        cols = {"caption": texts, "source": ["x"] * len(texts), "image_id": [""] * len(texts),
                "labels": pa.FixedSizeListArray.from_arrays(pa.array(labels.reshape(-1), pa.int8()), 3)}
        if kinds:
            cols["kind"] = kinds
        pq.write_table(pa.table(cols).replace_schema_metadata({b"classes": json.dumps(CLASSES).encode()}), path)

    write(tmp_path / "mined.parquet", TEXTS, LABELS)
    write(tmp_path / "llm.parquet", ["a circle left of a star", "a big red circle"], LABELS[[2, 0]],
          ["relationship", "attribute"])
    only = load_prompts(tmp_path / "mined.parquet")
    assert only.ids == [f"cap{i}" for i in range(8)] and only.texts == TEXTS
    both = load_prompts(tmp_path / "mined.parquet", tmp_path / "llm.parquet", ["relationship"])
    assert both.ids[-1] == "llm0" and both.texts[-1] == "a circle left of a star" and len(both) == 9
    assert both.sources[-1] == "llm:relationship" and np.array_equal(both.labels[-1], LABELS[2])
    sub = balanced_subset(only, 1, seed=0)
    assert all((sub.labels[:, c] == 1).sum() >= 1 for c in range(3)) and len(sub) <= 3
    assert sub.ids == sorted(sub.ids, key=lambda s: int(s[3:]))
    assert balanced_subset(only, 1, seed=0).ids == sub.ids and balanced_subset(only, None, 0) is only


DRIVER = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, sys.argv[3])
    from test_synthesis import CFG, prompts
    from mlr_core.shards import launched_processes
    from mlr_core.synthesis import load_pipeline, synthesize
    torch.set_num_threads(1)
    state = launched_processes("cpu")
    pipe = load_pipeline(sys.argv[1], "cpu", "fp32")
    summary = synthesize(pipe, prompts(), sys.argv[2], CFG, model="tiny", processes=state)
    print(f"rank {state.process_index} of {state.num_processes} done: {summary['images']}")
""")


@pytest.mark.slow
@pytest.mark.parametrize("blank", ["none", "retries"])
def test_worker_processes_write_the_one_process_folder(pipe, tmp_path, blank):
    """synthesis.workers: a shard's batches generated ahead in two one-thread worker processes give the folder
    one process makes, also when unusable images put retries in front of the queue (the rest of such a shard
    is then generated in the stage's process, batch after batch as before)."""
    p = prompts()
    seeds = set()
    if blank == "retries":
        seeds = {image_seed(CFG.seed, "cap2", 0, a) for a in range(CFG.max_retries + 1)}
        seeds |= {image_seed(CFG.seed, "cap5", 1, 0)}
    one = synthesize(Counting(pipe, blank_seeds=seeds), p, tmp_path / "one", CFG, model="tiny", workers=1)
    two = synthesize(Counting(pipe, blank_seeds=seeds), p, tmp_path / "two", CFG, model="tiny", workers=2)
    assert one == two and (one["regenerated"] > 0) == (blank == "retries")
    a, b = read_manifest_table(tmp_path / "one"), read_manifest_table(tmp_path / "two")
    assert a.equals(b)
    files = sorted(f.relative_to(tmp_path / "one") for f in (tmp_path / "one").rglob("*") if f.is_file())
    assert files == sorted(f.relative_to(tmp_path / "two") for f in (tmp_path / "two").rglob("*") if f.is_file())
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes() for f in files)


def test_two_processes_split_the_captions_and_write_the_single_process_folder(pipe, pipe_dir, tmp_path):
    synthesize(pipe, prompts(), tmp_path / "one", CFG, model="tiny")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launched = subprocess.run([Path(sys.executable).parent / "torchrun", "--nproc_per_node", "2", "--master_port",
                               "29533", driver, pipe_dir, tmp_path / "two", Path(__file__).parent],
                              capture_output=True, text=True, env=env, check=False)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "rank 0 of 2 done: 16" in launched.stdout and "rank 1 of 2 done: 16" in launched.stdout
    one, two = read_manifest_table(tmp_path / "one"), read_manifest_table(tmp_path / "two")
    assert one.equals(two)
    for p in one.column("path").to_pylist():
        assert (tmp_path / "one" / p).read_bytes() == (tmp_path / "two" / p).read_bytes()


def test_synthetic_folder_goes_through_the_feature_cache(pipe, tmp_path):
    from mlr_core.cache import FeatureCache, write_feature_cache
    from mlr_core.data.manifest import read_manifest_folder
    from mlr_core.models.clip import load_clip

    synthesize(pipe, prompts(), tmp_path / "syn", CFG, model="tiny")
    data = read_manifest_folder(tmp_path / "syn").subset("trainval")
    torch.manual_seed(0)
    clip = load_clip("tinyworld-RN", None, "cpu")
    write_feature_cache(data, clip, tmp_path / "syn.parquet", batch_size=8, shard_size=8)
    cache = FeatureCache(tmp_path / "syn.parquet", expect_fingerprint=clip.fingerprint)
    full = cache.read(("global", "dense"))
    assert len(cache) == 16 and cache.classes == CLASSES and full.dense.shape[1] == 16
    assert np.array_equal(full.labels, np.repeat(LABELS, 2, axis=0))


def test_scheduler_swap_and_unknown_scheduler(pipe_dir):
    swapped = load_pipeline(str(pipe_dir), "cpu", "fp32", "EulerAncestralDiscreteScheduler")
    assert type(swapped.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    images, bad = generate(swapped, ["a star"], [1], steps=2, guidance=1.0, resolution=16)
    again, _ = generate(swapped, ["a star"], [1], steps=2, guidance=1.0, resolution=16)
    assert images.shape == (1, 16, 16, 3) and not bad[0] and np.array_equal(images, again)  # noise comes from the seed
    with pytest.raises(ValueError, match="unknown diffusers scheduler"):
        load_pipeline(str(pipe_dir), "cpu", "fp32", "NoSuchScheduler")


@pytest.mark.parametrize("change", ["text", "labels"])
def test_kills_at_random_points_with_an_input_change_between_them_end_as_a_clean_run(pipe, tmp_path, capsys, change):
    """Killed three times at seeded random points; between the first two a prompt of the finished shard 0
    changes (its text, or only its label row: the noun filter re-run): the stale shard is redone, the others
    kept, and the folder is byte for byte the one a clean run on the new prompts writes."""
    rng = random.Random(f"kills-{change}")
    new = prompts()
    if change == "text":
        new.texts[1] = "a blue square and a red circle"
    else:
        new.labels[1] = [1, 1, 0]
    clean = tmp_path / "clean"
    synthesize(pipe, new, clean, CFG, model="tiny")
    out, current = tmp_path / "out", prompts()
    for kill, die_after in enumerate([2 + rng.randrange(2), 1 + rng.randrange(2), 1]):
        try:  # a run with less left than its kill point simply finishes
            synthesize(Counting(pipe, die_after_calls=die_after), current, out, CFG, model="tiny")
        except KeyboardInterrupt:
            pass
        if kill == 0:
            assert (tmp_path / "out.partial" / "shard-00000.parquet").exists()
            current = new
    capsys.readouterr()
    synthesize(pipe, new, out, CFG, model="tiny")
    assert "shard 0 was made from other inputs" in capsys.readouterr().out or not (tmp_path / "out.partial").exists()
    a, b = read_manifest_table(clean), read_manifest_table(out)
    assert a.equals(b)
    for p in a.column("path").to_pylist():
        assert (clean / p).read_bytes() == (out / p).read_bytes()


def test_a_finished_folder_is_redone_when_only_labels_changed(pipe, tmp_path):
    out = tmp_path / "syn"
    synthesize(pipe, prompts(), out, CFG, model="tiny")
    relabelled = prompts()
    relabelled.labels[4] = [1, 1, 1]
    synthesize(pipe, relabelled, out, CFG, model="tiny")
    labels = read_manifest_table(out).column("labels").combine_chunks().values.to_numpy().reshape(-1, 3)
    assert np.array_equal(labels, np.repeat(relabelled.labels, 2, axis=0))  # not the stale rows
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["classes.txt", "manifest.csv", "manifest.parquet",
                                                                   "state.json", "summary.json"]


def test_prompts_file_round_trip_keeps_ids_sources_and_labels(tmp_path):
    from mlr_core.synthesis import read_prompts, write_prompts

    p = prompts()
    p.sources[2] = "llm:relationship"
    write_prompts(p, tmp_path / "prompts.parquet")
    back = read_prompts(tmp_path / "prompts.parquet")
    assert (back.ids, back.texts, back.sources, back.classes) == (p.ids, p.texts, p.sources, p.classes)
    assert np.array_equal(back.labels, p.labels) and back.labels.dtype == np.int8
    with pytest.raises(FileNotFoundError, match="synthesis_prompts"):
        read_prompts(tmp_path / "missing.parquet")
