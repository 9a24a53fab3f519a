"""params.yaml is the one home of every value: the schema validates it and holds no defaults."""
import copy
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from mlr_core.config import Params, ParamsError, field_roles, leaf_keys, load_params

ROOT = Path(__file__).resolve().parents[1]
REPO_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def write(tmp_path, raw) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, sort_keys=False))
    return p


def changed(key: str, value=None, *, delete: bool = False, rename: str | None = None) -> dict:
    """The repository's params with one dotted key set, deleted or renamed."""
    raw = copy.deepcopy(REPO_PARAMS)
    *path, last = key.split(".")
    section = raw
    for k in path:
        section = section[k]
    if delete or rename:
        old = section.pop(last)
        if rename:
            section[rename] = old
    else:
        section[last] = value
    return raw


def _sections(model: type[BaseModel]):
    yield model
    for info in model.model_fields.values():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from _sections(sub)


def test_repository_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.model.arch == "tinyworld-RN"
    assert params.features.splits == ["trainval", "test"]


def test_the_schema_has_no_defaults():
    """A default in config.py would be a second home for a value, one DVC cannot see."""
    with_default = [f"{model.__name__}.{name}" for model in _sections(Params)
                    for name, info in model.model_fields.items() if not info.is_required()]
    assert with_default == []


def _has(raw: dict, key: str) -> bool:
    for k in key.split("."):
        if not isinstance(raw, dict) or k not in raw:
            return False
        raw = raw[k]
    return True


def test_params_yaml_holds_every_schema_field():
    missing = [k for k in leaf_keys() if not _has(REPO_PARAMS, k)]
    assert missing == []


def test_roles_name_real_fields():
    assert set(field_roles()) <= set(leaf_keys())
    assert field_roles()["model.pretrained"] == "input" and field_roles()["features.num_workers"] == "runtime"


def test_a_deleted_key_is_an_error_not_a_default(tmp_path):
    with pytest.raises(ParamsError) as e:
        load_params(write(tmp_path, changed("dataset.voc_difficult", delete=True)))
    assert "dataset.voc_difficult: missing" in str(e.value)


@pytest.mark.parametrize("raw, key, what", [
    (changed("features.batch_size", rename="batch_sze"), "features.batch_sze", "unknown key"),
    (changed("features.batch_size", "eight"), "features.batch_size", "integer"),
    (changed("features.batch_size", 0), "features.batch_size", "greater than or equal to 1"),
    (changed("tinyworld.min_objects", 5), "tinyworld", "min_objects"),
    (changed("t2i_pretrain.unet_restarts", [30000]), "t2i_pretrain", "unet_restarts"),
    (changed("evaluate.zeroshot.template", "a photo"), "evaluate.zeroshot", "exactly one"),
    (changed("tai_dpt.variants", ["tai", "magic"]), "tai_dpt.variants.1", "tai_dpt"),
    (changed("model.precision", "fp8"), "model.precision", "fp32"),
    (changed("features.splits", ["test", "test"]), "features.splits", "duplicate"),
    (changed("evaluate.top_k", [0]), "evaluate.top_k", "k >= 1"),
    (changed("evaluate.top_k", [-2, 3]), "evaluate.top_k", "k >= 1"),
    (changed("image_supervised.pvlr.runs", ["full_s0;touch pwned;#"]), "image_supervised.pvlr", "expected full_s<seed>"),
    (changed("image_supervised.dualcoop.runs", ["partial0_s0"]), "image_supervised.dualcoop", "1..100"),
    (changed("image_supervised.ensemble.partial_base", "tai_dpt;rm -rf x"), "image_supervised.ensemble.partial_base",
     "Input should be"),
])
def test_bad_params_name_the_key(tmp_path, raw, key, what):
    with pytest.raises(ParamsError) as e:
        load_params(write(tmp_path, raw))
    msg = str(e.value)
    assert "params.yaml" in msg and key in msg and what in msg, msg


def test_every_problem_is_reported_at_once(tmp_path):
    raw = changed("features.batch_size", rename="batch_sze")
    raw["features"]["shard_size"] = -1
    with pytest.raises(ParamsError) as e:
        load_params(write(tmp_path, raw))
    assert "batch_sze" in str(e.value) and "shard_size" in str(e.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(write(tmp_path, "features: [\n"))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(write(tmp_path, yaml.safe_dump([1, 2])))


def test_top_k_beyond_the_class_count_is_refused_before_scoring():
    from mlr_core.evaluate import check_top_k

    check_top_k([1, 20], [f"c{i}" for i in range(20)])
    with pytest.raises(ValueError, match=r"evaluate.top_k=\[3, 50\]: \[50\] outside 1..20"):
        check_top_k([3, 50], [f"c{i}" for i in range(20)])
