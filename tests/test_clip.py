"""CLIP provisioning as the pipeline uses it: a local checkpoint file (DVC tracks it), written once by
`python -m mlr_core.models.clip random|fetch`; identities that say which weights made an output."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlr_core.models.clip import (CheckpointError, WeightsUnavailableError, fetch_checkpoint, load_clip, model_info,
                                  write_random_checkpoint)
from mlr_core.models.features import encode_image_features, resize_grid_pos_embed

ROOT = Path(__file__).resolve().parents[1]


def _random(tmp_path, name, seed):
    out = tmp_path / name
    subprocess.run([sys.executable, "-m", "mlr_core.models.clip", "random", "tinyworld-RN", str(out), "--seed",
                    str(seed)], check=True, capture_output=True)
    return out


def test_random_checkpoint_is_seeded_byte_identical_and_loads(tmp_path):
    a, b, c = _random(tmp_path, "a.safetensors", 0), _random(tmp_path, "b.safetensors", 0), \
        _random(tmp_path, "c.safetensors", 1)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    clip_a, clip_c = load_clip("tinyworld-RN", str(a), "cpu"), load_clip("tinyworld-RN", str(c), "cpu")
    # the identity follows the file's contents, not its name
    assert clip_a.weights_id == load_clip("tinyworld-RN", str(b), "cpu").weights_id != clip_c.weights_id
    torch.manual_seed(0)
    import open_clip

    fresh = open_clip.create_model("tinyworld-RN", pretrained=None).state_dict()
    for k, v in clip_a.model.state_dict().items():
        assert torch.equal(v, fresh[k]), k
    info = model_info(clip_a)
    assert info["arch"] == "tinyworld-RN" and info["pretrained"] == str(a) and info["image_size"] == 128


def test_weights_id_ignores_resolution_and_fingerprint_does_not(tmp_path):
    ckpt = str(ROOT / "models" / "tinyworld-RN.safetensors")
    native, other = load_clip("tinyworld-RN", ckpt, "cpu"), load_clip("tinyworld-RN", None, "cpu", image_size=64)
    at64 = load_clip("tinyworld-RN", None, "cpu", image_size=64)
    assert native.weights_id != other.weights_id and other.weights_id == at64.weights_id
    assert load_clip("tinyworld-RN", None, "cpu").fingerprint != at64.fingerprint


def test_fetch_offline_fails_at_once_naming_the_command(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="python -m mlr_core.models.clip fetch RN50 openai"):
        fetch_checkpoint("RN50", "openai", tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an open_clip tag of RN50"):
        fetch_checkpoint("RN50", "no-such-tag", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_open_clip_is_imported_without_transformers_and_gets_it_back_for_hf_text_towers():
    """mlr_core.models skips transformers (a second of every stage's start) and restores open_clip's Hugging Face
    text-tower support on demand: in a fresh process, since this one may have imported transformers already."""
    code = """
import sys
import mlr_core.models as models, open_clip
assert "transformers" not in sys.modules and open_clip.hf_model.transformers is None
models.require_hf_support("RN50")  # no HF tower: nothing loaded
assert "transformers" not in sys.modules
models.require_hf_support("mt5-base-ViT-B-32")
import transformers
assert open_clip.hf_model.transformers is transformers
assert open_clip.model.HFTextEncoder.__init__.__globals__["AutoConfig"] is transformers.AutoConfig
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]


def test_open_clip_is_imported_without_torch_dynamo_and_torchvision_ops_still_run():
    """torchvision's import-time ``from torch._dynamo.utils import is_compile_supported`` meets a stand-in (another
    second of every stage's start); the real module comes in the first time an roi op, or anything else, needs it."""
    code = """
import sys
import torch
import mlr_core.models
assert "torch._dynamo" not in sys.modules and "torch._dynamo.utils" not in sys.modules
from torchvision.ops import roi_align
out = roi_align(torch.arange(64.).view(1, 1, 8, 8), [torch.tensor([[0., 0., 4., 4.]])], output_size=1, aligned=True)
assert out.item() == 13.5  # the mean of 8 * row + column over rows 0-3, columns 0-3
assert sys.modules["torchvision.ops.roi_align"].is_compile_supported("cpu")  # the stand-in's helper, delegating
assert "torch._dynamo.utils" in sys.modules and type(sys.modules["torch._dynamo.utils"]).__name__ == "module"
import torch._dynamo
assert torch.compile(lambda x: x + 1)(torch.ones(2)).tolist() == [2.0, 2.0]
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]


def _pos_embed(model):
    visual = model.visual
    return (visual.attnpool.positional_embedding if hasattr(visual, "attnpool") else visual.positional_embedding).detach()


@pytest.mark.parametrize("arch", ["tinyworld-RN", "RN50", "ViT-B-32", pytest.param("RN101", marks=pytest.mark.slow)])
def test_a_checkpoint_loads_at_any_resolution(tmp_path, arch):
    """Weights load at their native size, then the positional embedding is re-gridded to features.image_size: at
    the native size nothing changes; at 448 px the dense map is 14x14 and the global feature is the re-gridded
    model's own forward (which before this raised a state-dict size mismatch)."""
    ckpt = write_random_checkpoint(arch, tmp_path / f"{arch}.safetensors")
    base = load_clip(arch, str(ckpt), "cpu")
    native = load_clip(arch, str(ckpt), "cpu", image_size=base.image_size)
    assert native.fingerprint == base.fingerprint and torch.equal(_pos_embed(native.model), _pos_embed(base.model))
    big = load_clip(arch, str(ckpt), "cpu", image_size=448)
    assert big.image_size == 448 and big.fingerprint != base.fingerprint and big.weights_id == base.weights_id
    old = _pos_embed(base.model)
    side = int(round((old.shape[0] - 1) ** 0.5))
    assert torch.equal(_pos_embed(big.model), resize_grid_pos_embed(old, (side, side), (14, 14)))
    from PIL import Image

    image = big.preprocess(Image.new("RGB", (500, 400), (120, 30, 200)))
    assert image.shape == (3, 448, 448)
    x = torch.randn(2, 3, 448, 448, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = encode_image_features(big.model, x)
        own = big.model.encode_image(x)
    assert feats.grid == (14, 14) and feats.dense.shape[1] == 196
    torch.testing.assert_close(feats.global_, own)


def test_bad_checkpoints_name_model_pretrained(tmp_path):
    good = write_random_checkpoint("tinyworld-RN", tmp_path / "good.safetensors")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02not a pickle at all" * 50)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path, arch in ((corrupt, "tinyworld-RN"), (truncated, "tinyworld-RN"), (good, "RN50")):
        with pytest.raises(CheckpointError, match=rf"model.pretrained='{path}': not a loadable {arch} checkpoint") as e:
            load_clip(arch, str(path), "cpu")
        assert "Traceback" not in str(e.value) and len(str(e.value)) < 800
        assert isinstance(e.value, ValueError)  # what every stage script turns into a one-line error


def test_model_names_typos_get_suggestions_and_hub_names_fail_fast_offline(monkeypatch):
    with pytest.raises(ValueError, match="did you mean RN50") as e:
        load_clip("rn50", None, "cpu")
    assert "model.arch='rn50'" in str(e.value)
    with pytest.raises(ValueError, match="did you mean ViT-B-32"):
        load_clip("ViT-B32", None, "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="model.arch='hf-hub:someone/some-clip'.*HF_HUB_OFFLINE"):
        load_clip("hf-hub:someone/some-clip", None, "cpu")
    with pytest.raises(ValueError, match="set model.pretrained to null"):
        load_clip("hf-hub:someone/some-clip", "models/x.pt", "cpu")
    with pytest.raises(ValueError, match="expected hf-hub:<organisation>/<repository>"):
        load_clip("hf-hub:nothing", None, "cpu")
