"""Fuzzing the inputs a user hands the pipeline (hypothesis, bounded in examples and time): manifests, caption
files, LLM replies and params. Every case ends in a correct result or the project's own clear error (one that
names the file, line, field or key); never another exception, never a partial file left as if complete."""
import copy
import json
import string
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlr_core.config import ParamsError, load_params
from mlr_core.data.manifest import DatasetError, read_manifest
from mlr_core.text.llm_text import _parse_or_none, parse_groups, parse_phrases, parse_sentences
from mlr_core.text.mining import read_narratives, read_text_lines

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog", "hot dog"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# pieces a real manifest row is made of, and the ways they go wrong
_image = st.sampled_from(["a.png", "b.png", "missing.png", "", "../a.png", "/etc/passwd", "a.png\x00", " a.png",
                          "sub/../a.png", "ü.png"])
_split = st.sampled_from(["trainval", "test", "val", "", "TEST", "trainval "])
_label = st.sampled_from(["cat", "dog", "hot dog", "-cat", "?dog", "?*", "unicorn", "", "-", "?", "Cat", "cat;dog"])
_row = st.tuples(_image, _split, st.lists(_label, max_size=4))
_noise = st.text(alphabet=string.printable + "äé\u2028", max_size=40)


def _csv_line(row) -> str:
    image, split, labels = row
    return f"{image},{split},{';'.join(labels)}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for name in ("a.png", "b.png", "ü.png"):
        (d / name).write_bytes(b"x")
    return d


@FUZZ
@given(rows=st.lists(st.one_of(_row.map(_csv_line), _noise), max_size=6),
       header=st.sampled_from(["image,split,labels", "image,split", "labels,image,split", "", "image;split;labels"]))
def test_manifests_are_read_or_refused_by_file_and_line(folder, rows, header):
    m = folder / "manifest.csv"
    m.write_text("\n".join([header, *rows]) + "\n")
    try:
        data = read_manifest(m, folder / "classes.txt")
    except DatasetError as e:
        assert str(e).startswith(str(m)), e
        return
    assert len(data) >= 1 and data.targets.shape == (len(data), len(CLASSES))
    assert set(data.splits) <= {"trainval", "test"} and all(p.is_file() for p in data.paths)
    assert set(np.unique(data.targets)) <= {-1, 0, 1}


_json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=8)


@FUZZ
@given(lines=st.lists(st.one_of(
    st.fixed_dictionaries({"image_id": _json_value, "caption": _json_value}).map(json.dumps),
    _json_value.map(json.dumps), _noise), max_size=5))
def test_caption_files_are_read_or_refused_by_file_and_line(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("captions") / "narratives.jsonl"
    path.write_text("\n".join(lines) + "\n")
    try:
        sentences = read_narratives(path)
    except DatasetError as e:
        assert str(e).startswith(f"{path}:"), e
        return
    assert all(isinstance(s.text, str) and s.text.strip() == s.text and s.text for s in sentences)


@FUZZ
@given(data=st.binary(max_size=200))
def test_text_caption_files_never_fail(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_bytes(data)
    sentences, counts = read_text_lines(path)
    assert all(s.text and "\n" not in s.text for s in sentences) and counts["non_utf8_lines"] >= 0


_reply = st.one_of(
    _noise, st.text(max_size=300),
    _json_value.map(json.dumps),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a": ' * n + "1" + "}" * n),
    st.lists(st.sampled_from(["1. ", "- ", "**", "| x |", "```json", "```", "cat", "dog: a, b", ":", "\n"]),
             max_size=12).map("".join),
    st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=3))


@FUZZ
@given(reply=_reply)
def test_llm_replies_parse_or_count_as_unusable(reply):
    named = lambda item: [i for i, c in enumerate(CLASSES) if c in item.lower()]  # noqa: E731
    for parse in (parse_phrases, parse_sentences, lambda r: parse_groups(r, named)):
        out = _parse_or_none(parse, reply)
        assert out is None or isinstance(out, list)


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
_KEYS = sorted(_leaves(_PARAMS))
_odd_value = st.one_of(st.none(), st.booleans(), st.integers(-10, 10 ** 6), st.floats(allow_nan=True),
                       st.text(max_size=12), st.lists(st.integers(-3, 60), max_size=3), st.dictionaries(
                           st.text(max_size=4), st.integers(), max_size=2))


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(_KEYS), _odd_value), min_size=1, max_size=3))
def test_params_are_accepted_or_refused_naming_the_key(tmp_path_factory, changes):
    raw = copy.deepcopy(_PARAMS)
    for key, value in changes:
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        load_params(path)
    except ParamsError as e:
        msg = str(e)
        # the error names the file and one of the changed keys (or the section that holds it)
        assert "params.yaml" in msg
        assert any(k.rsplit(".", 1)[0].split(".")[0] in msg for k, _ in changes), msg
