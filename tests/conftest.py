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
