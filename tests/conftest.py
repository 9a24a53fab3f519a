import os

# No test may touch the network: open_clip / huggingface must fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def clip():
    """The tinyworld CLIP architecture with seeded random weights (no checkpoint), on the CPU: what the unit
    tests need of a CLIP (shapes, gradients, save/load), one per test module so none sees another's changes."""
    import torch

    from mlr_core.models.clip import load_clip

    torch.manual_seed(0)
    return load_clip("tinyworld-RN", None, "cpu")


@pytest.fixture(scope="session")
def make_benchmark(tmp_path_factory):
    """Writes a small tinyworld benchmark (64 px images, no caption corpus) to a fresh folder and returns one of
    its splits as :class:`mlr_core.data.manifest.LabelledImages`: the image fixture of the cache and views tests."""
    from mlr_core.data.manifest import read_manifest
    from mlr_core.data.tinyworld import write_tinyworld

    def make(*, seed: int, n_trainval: int, n_test: int, split: str, max_objects: int = 4):
        root = tmp_path_factory.mktemp("tw")
        write_tinyworld(root, seed=seed, image_size=64, min_objects=1, max_objects=max_objects, n_corpus=0,
                        captions_per_scene=1, n_trainval=n_trainval, n_test=n_test)
        return read_manifest(root / "benchmark" / "manifest.csv", root / "benchmark" / "classes.txt").subset(split)

    return make
