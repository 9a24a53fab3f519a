"""The saved-model helper every trained method uses (mlr_core.io.save_learned / load_learned)."""
import pytest
import torch
from safetensors.torch import save_file

from mlr_core.io import load_learned, save_learned


def test_learned_tensors_round_trip_with_metadata(tmp_path):
    ctx = torch.nn.Parameter(torch.randn(3, 4))
    save_learned(tmp_path / "m.safetensors", {"ctx": ctx, "proto": torch.arange(6.0).view(2, 3).t()},
                 classnames=["cat", "dog"], config={"n_ctx": 3, "layout": [1, 2]}, extra={"seed": 7})
    tensors, meta = load_learned(tmp_path / "m.safetensors")
    assert torch.equal(tensors["ctx"], ctx.detach()) and torch.equal(tensors["proto"], torch.arange(6.0).view(2, 3).t())
    assert meta == {"classnames": ["cat", "dog"], "config": {"n_ctx": 3, "layout": [1, 2]}, "seed": 7}
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind


def test_load_learned_names_the_file_on_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_learned(tmp_path / "missing.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="foreign.safetensors.*classnames"):
        load_learned(tmp_path / "foreign.safetensors")


def test_the_same_tensors_give_the_same_file_in_every_process(tmp_path):
    """DVC hashes outputs: a retrain with the same params must write the same bytes (safetensors writes
    several metadata keys in a per-process random order, so the metadata is one sorted JSON document)."""
    import hashlib
    import subprocess
    import sys

    code = ("import sys, torch; from mlr_core.io import save_learned; "
            "save_learned(sys.argv[1], {'b': torch.ones(3), 'a': torch.zeros(2)}, classnames=['x', 'y'], "
            "config={'n_ctx': 4, 'init': None}, extra={'seed': 0, 'method': 'm', 'run': 'r', 'budget': 'b'})")
    digests = set()
    for k in range(4):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"{k}.safetensors")], check=True)
        digests.add(hashlib.md5((tmp_path / f"{k}.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1
