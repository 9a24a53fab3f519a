import numpy as np
import pytest
import torch

from mlr_core.cache import write_text_feature_cache
from mlr_core.methods.tai_dpt import DoubleGrainedPrompts, PromptConfig, train_tai_dpt
from mlr_core.models.clip import load_clip
from mlr_core.train import OptimConfig

CLASSES = ["circle", "square", "star", "heart"]


@pytest.fixture(scope="module")
def caption_cache(clip, tmp_path_factory):
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for _ in range(96):
        chosen = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
        texts.append("a photo of " + " and ".join(f"a {CLASSES[c]}" for c in chosen) + ".")
        y = np.zeros(4, np.int8)
        y[chosen] = 1
        labels.append(y)
    out = tmp_path_factory.mktemp("cap") / "captions.parquet"
    return write_text_feature_cache(texts, [f"c{i}" for i in range(96)], np.stack(labels), CLASSES, clip, out,
                                    batch_size=32, shard_size=64)


@pytest.mark.parametrize("variant", ["tai", "tai_dpt"])
def test_training_lowers_the_loss_and_round_trips(clip, caption_cache, tmp_path, variant):
    optim = OptimConfig(optimizer="sgd", lr=0.05, weight_decay=5e-4, batch_size=32, steps=18, warmup_steps=0,
                        eval_every=3)
    result = train_tai_dpt(clip, caption_cache, tmp_path / "p.safetensors", variant=variant, n_ctx=4,
                        class_specific=False, init=None, optim=optim, margin=1.0, scale=4.0, text_temperature=50.0,
                        heldout_fraction=0.1, seed=0)
    log = result.log
    assert log[-1]["train_loss"] < log[0]["train_loss"] and [e["step"] for e in log] == [3, 6, 9, 12, 15, 18]
    # the kept weights are the best on the held-out captions (the first best on ties)
    best = max(e["heldout_text_mAP"] for e in log)
    assert result.selected_value == best
    assert result.selected_step == next(e["step"] for e in log if e["heldout_text_mAP"] == best)
    prompts, meta = DoubleGrainedPrompts.load(tmp_path / "p.safetensors", clip)
    assert prompts.classnames == CLASSES and meta["variant"] == variant
    assert (prompts.ctx_local is None) == (variant == "tai")
    # the same seed gives the same prompts
    train_tai_dpt(clip, caption_cache, tmp_path / "q.safetensors", variant=variant, n_ctx=4, class_specific=False,
                  init=None, optim=optim, margin=1.0, scale=4.0, text_temperature=50.0, heldout_fraction=0.1, seed=0)
    again, _ = DoubleGrainedPrompts.load(tmp_path / "q.safetensors", clip)
    assert torch.equal(again.ctx_global, prompts.ctx_global)


def test_hand_crafted_init_reproduces_the_hand_crafted_prompt(clip):
    from mlr_core.methods.zsclip import hand_crafted_text

    prompts = DoubleGrainedPrompts(clip, CLASSES, PromptConfig(n_ctx=4, init="a photo of a", use_local=False))
    with torch.no_grad():
        learned, _ = prompts.class_features()
    torch.testing.assert_close(learned, hand_crafted_text(clip, CLASSES, "a photo of a {}."), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="n_ctx=16 but init 'a photo of a' has 4 tokens"):
        DoubleGrainedPrompts(clip, CLASSES, PromptConfig(n_ctx=16, init="a photo of a"))


def test_an_artifact_is_never_scored_with_another_model(clip, caption_cache, tmp_path):
    """A trained file records the CLIP weights it was trained with; scoring it with another model (params
    changed, training stage not re-run) is refused, not silently mixed."""
    from pathlib import Path

    from mlr_core.cache import CacheMismatchError
    from mlr_core.config import load_params
    from mlr_core.methods.registry import build_scorer

    root = Path(__file__).resolve().parents[1]
    optim = OptimConfig(optimizer="sgd", lr=0.05, weight_decay=5e-4, batch_size=32, steps=3, warmup_steps=0,
                        eval_every=3)
    train_tai_dpt(clip, caption_cache, tmp_path / "p.safetensors", variant="tai_dpt", n_ctx=4, class_specific=False,
                  init=None, optim=optim, margin=1.0, scale=4.0, text_temperature=50.0, heldout_fraction=0.1, seed=0)
    params = load_params(root / "params.yaml")
    assert build_scorer("tai_dpt", clip, CLASSES, params, tmp_path / "p.safetensors").needs_dense
    other = load_clip("tinyworld-RN", str(root / "models" / "tinyworld-RN.safetensors"))
    assert other.weights_id != clip.weights_id
    with pytest.raises(CacheMismatchError, match="trained with another model"):
        build_scorer("tai_dpt", other, CLASSES, params, tmp_path / "p.safetensors")
    with pytest.raises(ValueError, match="trained for classes"):
        build_scorer("tai_dpt", clip, CLASSES[::-1], params, tmp_path / "p.safetensors")
