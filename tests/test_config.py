import pytest
import yaml

from mlr_core.config import ParamsError, load_params


def write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_repository_params_are_valid():
    params = load_params("params.yaml")
    assert params.model.arch == "tinyworld-RN"
    assert params.evaluate.methods == ["zsclip", "zsclip_dpt"]


def test_defaults_fill_missing_sections(tmp_path):
    params = load_params(write(tmp_path, "features:\n  batch_size: 8\n"))
    assert params.features.batch_size == 8 and params.tinyworld.n_test == 1000


@pytest.mark.parametrize("text, key, what", [
    ("features:\n  batch_sze: 8\n", "features.batch_sze", "unknown key"),
    ("featurs:\n  batch_size: 8\n", "featurs", "unknown key"),
    ("features:\n  batch_size: eight\n", "features.batch_size", "integer"),
    ("features:\n  batch_size: 0\n", "features.batch_size", "greater than or equal to 1"),
    ("tinyworld:\n  min_objects: 5\n  max_objects: 2\n", "tinyworld", "min_objects"),
    ("t2i_pretrain:\n  steps: 100\n  unet_restarts: [100]\n", "t2i_pretrain", "unet_restarts"),
    ("evaluate:\n  zeroshot:\n    template: 'a photo'\n", "evaluate.zeroshot", "exactly one"),
    ("evaluate:\n  methods: [zsclip, magic]\n", "evaluate.methods.1", "zsclip"),
    ("model:\n  precision: fp8\n", "model.precision", "fp32"),
])
def test_bad_params_name_the_key(tmp_path, text, key, what):
    with pytest.raises(ParamsError) as e:
        load_params(write(tmp_path, text))
    msg = str(e.value)
    assert "params.yaml" in msg and key in msg and what in msg, msg


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ParamsError) as e:
        load_params(write(tmp_path, "features:\n  batch_sze: 8\n  shard_size: -1\n"))
    assert "batch_sze" in str(e.value) and "shard_size" in str(e.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(write(tmp_path, "features: [\n"))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(write(tmp_path, yaml.safe_dump([1, 2])))
