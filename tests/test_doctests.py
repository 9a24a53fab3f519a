"""The runnable ``Example:`` sections of mlr_core's docstrings (every module that has one) pass."""
import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for f in (ROOT / "mlr_core").rglob("*.py") if ">>>" in f.read_text())


def test_examples_exist():
    assert {"mlr_core.metrics", "mlr_core.runs", "mlr_core.shards", "mlr_core.data.manifest"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
