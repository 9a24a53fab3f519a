"""What every stage script shares: which stage it is running, and its params, validated, before any work.

* **Which stage.** DVC runs a stage's command with ``DVC_STAGE`` set to the stage's name
  (``train_prompts@tai_dpt``). Commands in dvc.yaml carry no value from params (a param can never reach a
  shell): a ``foreach`` stage finds its item in its own name, checked against the params list it iterates
  over. Outside DVC, ``--stage NAME`` says the same (e.g. under ``accelerate launch``).
* **Which params.** The whole params file is validated first; then the script sees only the keys that
  dvc.yaml lists in the stage's ``params`` (plus the untracked ``runtime`` knobs, see mlr_core.config).
  Reading any other key stops the stage with an error naming it, so a stage can never depend on a value
  that DVC would not re-run it for. With ``MLR_PARAMS_TRACE=<file>`` every stage appends the keys it
  read to that file (tests/test_pipeline_e2e.py checks that each stage reads all it declares).
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel

from mlr_core.config import SAFE_NAME, ParamsError, field_roles, load_params


class StageError(RuntimeError):
    """The stage is unknown, or its item is not one params.yaml lists."""


class UndeclaredParamError(RuntimeError):
    """A stage read a params key that dvc.yaml does not track for it."""


def _covered(key: str, declared: set[str]) -> bool:
    return any(key == d or key.startswith(d + ".") for d in declared)


class ParamsView:
    """Read-only attribute access to a params section, restricted to the keys a stage declares."""

    def __init__(self, section: BaseModel, prefix: str, allowed: set[str], stage: str, reads: set[str]):
        self._section, self._prefix, self._allowed, self._stage, self._reads = section, prefix, allowed, stage, reads

    def _check(self, key: str) -> None:
        if not _covered(key, self._allowed):
            raise UndeclaredParamError(
                f"stage {self._stage} reads params key {key}, which dvc.yaml does not list in the stage's params "
                f"(DVC would not re-run the stage when it changes): add it there")
        self._reads.add(key)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._section, name)  # AttributeError for a field the section does not have
        key = self._prefix + name
        if isinstance(value, BaseModel):
            return ParamsView(value, key + ".", self._allowed, self._stage, self._reads)
        self._check(key)
        return value

    def model_dump(self) -> dict:
        """The whole section as a dict: every key in it counts as read."""
        for name in type(self._section).model_fields:
            value = getattr(self, name)
            if isinstance(value, ParamsView):
                value.model_dump()
        return self._section.model_dump()

    def __repr__(self) -> str:
        return f"ParamsView({self._prefix.rstrip('.') or 'params'})"


def _dvc_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or ".")


def declared_params(stage_base: str, dvc_yaml: str | Path | None = None) -> list[str]:
    """The params keys dvc.yaml lists for stage ``stage_base`` (a foreach stage's ``do`` body)."""
    path = Path(dvc_yaml) if dvc_yaml else _dvc_root() / "dvc.yaml"
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages", {})
    if stage_base not in stages:
        raise StageError(f"{path}: no stage {stage_base!r} (stages: {', '.join(stages)})")
    body = stages[stage_base].get("do", stages[stage_base])
    keys = []
    for entry in body.get("params", []):
        if not isinstance(entry, str) or "${" in entry:
            raise StageError(f"{path}: stage {stage_base}: params entries must be plain keys of params.yaml, "
                             f"got {entry!r}")
        keys.append(entry)
    return keys


@dataclass
class Stage:
    name: str          # e.g. train_prompts@tai_dpt
    base: str          # train_prompts
    item: Any          # the foreach item (None for a plain stage): a value of the iterated list, or what the
                       # script's mapping gives for it (e.g. a (variant, run) pair of a matrix stage)
    args: argparse.Namespace
    params: Any        # a ParamsView of mlr_core.config.Params
    reads: set = field(default_factory=set)  # the params keys read so far (the trace)


_TRACE: list[dict] = []


def _write_trace() -> None:
    path = os.environ.get("MLR_PARAMS_TRACE")
    if path and _TRACE:
        with open(path, "a") as f:
            for t in _TRACE:
                f.write(json.dumps({**t, "read": sorted(t["read"])}) + "\n")


atexit.register(_write_trace)


def stage_args(description: str, extra: Callable[[argparse.ArgumentParser], Any] | None = None, *,
               stages: dict[str, Callable | None]) -> Stage:
    """Parse the command line, find the stage being run and its item, and return its params view.

    ``stages``: the stage names this script runs -> ``None`` for a plain stage, or for a foreach stage a
    function of the validated params returning the iterated list (or a dict: item name -> value).
    Exits with a one-line error on bad params, an unknown stage or an item params.yaml does not list.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    names = " | ".join(f"{s}@<item>" if f else s for s, f in stages.items())
    parser.add_argument("--stage", default=os.environ.get("DVC_STAGE"),
                        help=f"the dvc.yaml stage to run ({names}; default: $DVC_STAGE, which DVC sets)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    try:
        params = load_params(args.params)
        name = (args.stage or "").rsplit(":", 1)[-1]  # DVC prefixes stages of other dvc.yaml files with their path
        if not name:
            raise StageError(f"no stage given: run it with `dvc repro`, or pass --stage "
                             f"({', '.join(stages)})")
        base, _, item_name = name.partition("@")
        if base not in stages:
            raise StageError(f"stage {name!r} is not one this script runs ({', '.join(stages)})")
        item = None
        if stages[base] is not None:
            listed = stages[base](params)
            mapping = listed if isinstance(listed, dict) else {str(v): v for v in listed}
            if not re.match(SAFE_NAME, item_name or "") or item_name not in mapping:
                raise StageError(f"stage {name!r}: {item_name!r} is not an item of its params list "
                                 f"({', '.join(mapping) or 'empty'})")
            item = mapping[item_name]
        elif item_name:
            raise StageError(f"stage {base} has no items, got {name!r}")
        declared = set(declared_params(base))
        runtime = {k for k, role in field_roles().items() if role == "runtime"}
        reads: set[str] = set()
        _TRACE.append({"stage": name, "declared": sorted(declared), "read": reads})
        view = ParamsView(params, "", declared | runtime, name, reads)
    except (ParamsError, StageError) as e:
        sys.exit(f"error: {e}")
    return Stage(name, base, item, args, view, reads)


def image_supervised_stages(kind: str) -> dict[str, Callable | None]:
    """The ``train_*`` or ``evaluate_*`` stages of the image-supervised methods: one per method (all its runs
    in one process); CoOp's is a foreach over its variants (coop, coop_dpt), each a method of the registry."""
    return {f"{kind}_dualcoop": None, f"{kind}_pvlr": None, f"{kind}_coop": lambda p: p.image_supervised.coop.variants}


def image_supervised_method(stage: Stage) -> str:
    """The registry method of an image-supervised stage: its item (coop variants) or its name's suffix."""
    return stage.item or stage.base.split("_", 1)[1]
