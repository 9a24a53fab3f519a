"""DVC sees every knob and input (fast checks of dvc.yaml against the code and params.yaml).

* every mlr_core module a stage's script imports (function-level imports included; a method's module from
  the registry) and the package data it loads is a dep of the stage;
* every file or folder a param of the stage names (role ``input`` in mlr_core.config) is a dep, through
  ``${key}`` interpolation, so another checkpoint or dataset becomes a dep the moment params name it;
* params entries are keys of params.yaml; every key is tracked by some stage unless it is a runtime knob,
  which no stage tracks;
* commands carry no value from params (a hostile value cannot reach a shell), and a stage's item is
  validated before any work.

Run as a script (``python tests/test_pipeline_truth.py``) to print what each stage misses.
"""
from __future__ import annotations

import ast
import copy
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipeline"))

# Read params and nothing else: their values are tracked, their code holds no value (tested in test_config).
NOT_DEPS = {"mlr_core/config.py", "pipeline/_common.py"}


# ------------------------------------------------------------------------------------------ import closure
def _module_file(module: str) -> Path | None:
    p = ROOT / Path(*module.split("."))
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def _imported(path: Path) -> set[str]:
    """Every absolute import anywhere in the file (top level and inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _only_docstring(path: Path) -> bool:
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in ast.parse(path.read_text()).body)


def import_closure(files: list[str]) -> set[str]:
    """The repo files ``files`` load, transitively: mlr_core modules, the packages above them, and the data
    folders a package ``__init__`` reads at import (``Path(__file__).parent / "name"``)."""
    seen: set[Path] = set()
    todo = [ROOT / f for f in files]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for module in _imported(f):
            if (ROOT / "pipeline" / f"{module}.py").is_file():  # the stage scripts' own helpers (_common, ...)
                todo.append(ROOT / "pipeline" / f"{module}.py")
            elif module.startswith("mlr_core"):
                parts = module.split(".")
                todo += [m for m in (_module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)) if m]
    out = set()
    for f in seen:
        rel = f.relative_to(ROOT).as_posix()
        if rel in NOT_DEPS or (f.name == "__init__.py" and _only_docstring(f)):
            continue
        out.add(rel)
        if f.name == "__init__.py":
            data = re.findall(r'Path\(__file__\)(?:\.resolve\(\))?\.parent\s*/\s*"([^"]+)"', f.read_text())
            out.update((f.parent / m).relative_to(ROOT).as_posix() for m in data)
    return out


def stage_method(name: str) -> str | None:
    """The registry method a stage loads by name (mlr_core.methods.registry imports it dynamically)."""
    base, _, item = name.partition("@")
    if base == "evaluate_prompts":
        return item
    if base in ("train_coop", "evaluate_coop"):
        return item
    m = re.fullmatch(r"(?:train|evaluate|refine)_(zsclip_dpt|zsclip|datafree|t2i_pal|dualcoop|pvlr|sparc|class_concepts)",
                     base)
    return m.group(1) if m else None


def code_deps(stage) -> set[str]:
    script = re.match(r"python (pipeline/\S+\.py)", stage.cmd)
    assert script, f"{stage.addressing}: the command must start with `python pipeline/<script>.py`"
    files = [script.group(1)]
    method = stage_method(stage.addressing)
    if method:
        from mlr_core.methods.registry import get_method

        files.append(get_method(method).module.replace(".", "/") + ".py")
    return import_closure(files)


# ------------------------------------------------------------------------------------------ DVC's stages
def resolved_stages(project: Path):
    """The stages DVC builds from ``project``'s dvc.yaml and params.yaml (nothing is run)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return [s for s in repo.index.stages]


def _dep_paths(stage) -> list[str]:
    from dvc.dependency.param import ParamsDependency

    return [d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)]


def _param_keys(stage) -> list[str]:
    from dvc.dependency.param import ParamsDependency

    return [k for d in stage.deps if isinstance(d, ParamsDependency) for k in d.params]


def _covered(path: str, deps: list[str]) -> bool:
    path = os.path.normpath(path)
    return any(path == os.path.normpath(d) or path.startswith(os.path.normpath(d) + os.sep) for d in deps)


def _lookup(raw: dict, key: str):
    for k in key.split("."):
        raw = raw[k]
    return raw


def _leaves(raw, prefix: str = "") -> list[str]:
    if isinstance(raw, dict):
        return [leaf for k, v in raw.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def missing_deps(stages, params: dict) -> dict[str, list[str]]:
    """Per stage: imported code and param-named inputs that are not deps."""
    from mlr_core.config import field_roles

    inputs = {k for k, role in field_roles().items() if role == "input"}
    gaps = {}
    for stage in stages:
        deps = _dep_paths(stage)
        declared = _param_keys(stage)
        want = sorted(code_deps(stage))
        want += [f"{_lookup(params, k)}  (params {k})" for k in sorted(inputs)
                 if any(k == d or k.startswith(d + ".") for d in declared)]
        miss = [w for w in want if not _covered(w.split("  (")[0], deps)]
        if miss:
            gaps[stage.addressing] = miss
    return gaps


@pytest.fixture(scope="module")
def stages():
    return resolved_stages(ROOT)


@pytest.fixture(scope="module")
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_every_module_and_input_a_stage_reads_is_a_dep(stages, params):
    assert missing_deps(stages, params) == {}


# Every input-role param moved elsewhere: the deps must follow (they are ${key}, not copies of the value).
MOVED = {"model.pretrained": "elsewhere/clip.safetensors", "dataset.root": "elsewhere/dataset",
         "captions.corpus_dir": "elsewhere/corpus", "captions.synonyms": "elsewhere/synonyms.yaml",
         "llm.model": "elsewhere/llm", "llm.questions": "elsewhere/questions.yaml",
         "llm.synonyms": "elsewhere/llm_synonyms.yaml", "synthesis.model": "elsewhere/t2i",
         "t2i_pretrain.clip_checkpoint": "elsewhere/t2i_clip.safetensors",
         "predict.classifier": "elsewhere/classifier.safetensors", "predict.images": "elsewhere/photos"}


def _project(tmp_path: Path, params: dict) -> Path:
    from dvc.repo import Repo

    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Repo.init(str(tmp_path), no_scm=True)
    return tmp_path


def test_dvc_lock_records_only_the_stages_dvc_yaml_defines(stages):
    """DVC keeps the lock entry of a stage that was renamed or removed; such entries misstate the pipeline, and
    every stage that runs re-parses and rewrites the whole lock (round-trip YAML, pure Python): with 72 stale
    entries of 109 that was 2 s more per stage, about a minute of a default `dvc repro`."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text()) or {}
    stale = sorted(set(lock.get("stages", {})) - {s.addressing for s in stages})
    assert not stale, f"dvc.lock has entries for stages dvc.yaml does not define (delete them): {stale}"


def test_a_param_named_input_becomes_a_dep_wherever_it_points(tmp_path, params):
    from mlr_core.config import field_roles

    assert set(MOVED) == {k for k, role in field_roles().items() if role == "input"}
    moved = copy.deepcopy(params)
    for key, value in MOVED.items():
        *path, last = key.split(".")
        _lookup(moved, ".".join(path))[last] = value
    assert missing_deps(resolved_stages(_project(tmp_path, moved)), moved) == {}


def test_params_entries_are_keys_and_every_key_is_tracked(stages, params):
    from mlr_core.config import field_roles

    roles = field_roles()
    tracked = {k for s in stages for k in _param_keys(s)}
    for key in tracked:
        _lookup(params, key)  # KeyError: a params entry that params.yaml does not have
    untracked = [leaf for leaf in _leaves(params) if not any(leaf == t or leaf.startswith(t + ".") for t in tracked)]
    assert sorted(untracked) == sorted(k for k, role in roles.items() if role in ("runtime", "foreach"))
    runtime_tracked = [k for k in tracked for r, role in roles.items() if role == "runtime" and
                       (r == k or r.startswith(k + "."))]
    assert runtime_tracked == []  # a knob that changes nothing re-runs nothing


def test_commands_carry_no_value_from_params(tmp_path, params):
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, body in raw.items():
        assert "${" not in body.get("do", body)["cmd"], name
    hostile = copy.deepcopy(params)
    evil = ";touch pwned;#"
    hostile["image_supervised"]["pvlr"]["runs"] = [f"full_s0{evil}"]
    hostile["image_supervised"]["coop"]["runs"] = [f"shot1_s0$(touch pwned){evil}"]
    hostile["image_supervised"]["ensemble"]["partial_base"] = f"tai_dpt{evil}"
    hostile["t2i_pal"]["runs"] = [f"s0{evil}"]
    for stage in resolved_stages(_project(tmp_path, hostile)):
        assert "pwned" not in stage.cmd, stage.addressing


def test_params_entries_are_plain_keys():
    from _common import declared_params

    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in raw:
        declared_params(name)  # StageError on an interpolated or non-key entry


def test_every_param_readme_names_is_a_key_of_params_yaml(params):
    """README's params are real keys (so `dvc exp run -S key=value` accepts each of them)."""
    readme = (ROOT / "README.md").read_text()
    sections = "|".join(sorted(params, key=len, reverse=True))
    named = {k for k in re.findall(rf"(?<![\w/.-])((?:{sections})(?:\.[A-Za-z_0-9]+)+)(?![\w/-])", readme)
             if k.rsplit(".", 1)[1] not in ("py", "json", "yaml", "parquet")}  # file names, not keys
    named |= set(re.findall(r"-S '?([A-Za-z_0-9.]+)=", readme))

    def is_key(key: str) -> bool:
        value = params
        for k in key.split("."):
            if not isinstance(value, dict) or k not in value:
                return False
            value = value[k]
        return True

    assert len(named) > 30 and sorted(k for k in named if not is_key(k)) == []


# ------------------------------------------------------------------------------------------ the stage glue
def _run_stage_args(monkeypatch, argv, stages, env_stage=None):
    import _common

    monkeypatch.setattr(sys, "argv", ["script.py", "--params", str(ROOT / "params.yaml"), *argv])
    monkeypatch.setenv("DVC_ROOT", str(ROOT))
    if env_stage is None:
        monkeypatch.delenv("DVC_STAGE", raising=False)
    else:
        monkeypatch.setenv("DVC_STAGE", env_stage)
    return _common.stage_args("test", stages=stages)


def test_a_stage_finds_its_item_in_its_name(monkeypatch):
    stage = _run_stage_args(monkeypatch, [], {"train_prompts": lambda p: p.tai_dpt.variants}, "train_prompts@tai_dpt")
    assert (stage.name, stage.base, stage.item) == ("train_prompts@tai_dpt", "train_prompts", "tai_dpt")
    stage = _run_stage_args(monkeypatch, ["--stage", "dvc.yaml:train_coop@coop_dpt"],
                            {"train_coop": lambda p: p.image_supervised.coop.variants})
    assert stage.item == "coop_dpt"


@pytest.mark.parametrize("name, why", [
    ("train_prompts@;touch pwned;#", "is not an item of its params list"),
    ("train_prompts@magic", "is not an item of its params list (tai, tai_dpt)"),
    ("budgets", "is not one this script runs"),
    ("", "no stage given"),
])
def test_a_bad_stage_or_item_stops_before_any_work(monkeypatch, capsys, name, why):
    with pytest.raises(SystemExit) as e:
        _run_stage_args(monkeypatch, [], {"train_prompts": lambda p: p.tai_dpt.variants}, name)
    assert why in str(e.value)


def test_a_stage_reads_only_the_keys_dvc_tracks_for_it(monkeypatch):
    from _common import UndeclaredParamError

    stage = _run_stage_args(monkeypatch, [], {"evaluate_zsclip": None}, "evaluate_zsclip")
    params = stage.params
    assert params.evaluate.zeroshot.template == "a photo of a {}." and params.model.device  # declared / runtime
    with pytest.raises(UndeclaredParamError, match="evaluate_zsclip reads params key evaluate.zeroshot.local_weight"):
        params.evaluate.zeroshot.local_weight
    with pytest.raises(UndeclaredParamError, match=r"reads params key tai_dpt\."):
        params.tai_dpt.model_dump()


if __name__ == "__main__":
    for stage, gaps in missing_deps(resolved_stages(ROOT), yaml.safe_load((ROOT / "params.yaml").read_text())).items():
        print(f"{stage}: {', '.join(gaps)}")
