"""Per-class synonym tables: which noun phrases name each class of a dataset, in its class order.

The tables the project ships are ``synonyms/<dataset>.yaml`` next to this module (class name -> list of
phrases); any other file of that shape can be given (``captions.synonyms``, ``llm.synonyms``). A table is
validated when read: every class has a non-empty list, phrases are plain lowercase noun phrases, and no phrase
belongs to two classes.

Stop-phrases: multi-word names that contain a class word but denote something else ("hot dog" is no dog,
"power plant" no plant, "town square" no square). The noun filter matches them like multi-word synonyms,
so they consume their words, and fires nothing. One shared list, ``synonyms/stop_phrases.yaml`` (kind ->
phrases), applies to every table, the built-in ones and users' own; a table file may add its own under the
reserved key ``stop_phrases``. A table's own synonyms win over the shared list: "hot dog" is a stop-phrase
for VOC and the class ``hot dog`` for COCO.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from functools import lru_cache
from typing import Mapping, Sequence

import yaml

from mlr_core.data.datasets import builtin_classes

SYNONYM_DIR = Path(__file__).resolve().parent / "synonyms"
STOP_PHRASES_FILE = SYNONYM_DIR / "stop_phrases.yaml"
STOP_PHRASES_KEY = "stop_phrases"  # the reserved key of a table file for its own stop-phrases
_PHRASE_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*(?: [a-z0-9]+(?:[-'][a-z0-9]+)*)*")
# Two or more words, no apostrophes: word_tokenize then splits a stop-phrase exactly into its words.
_STOP_PHRASE_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*(?: [a-z0-9]+(?:-[a-z0-9]+)*)+")


def _stop_phrase_list(entry, source: str, field: str) -> list[str]:
    """One validated list of stop-phrases (``field`` names it in errors: a kind of the shared file, or the
    ``stop_phrases`` key of a table)."""
    if isinstance(entry, str) or not isinstance(entry, (list, tuple)):
        raise ValueError(f"{source}: {field}: expected a list of multi-word phrases, got {entry!r}")
    out = []
    for k, p in enumerate(entry):
        norm = " ".join(p.lower().split()) if isinstance(p, str) else None
        if norm is None or not _STOP_PHRASE_RE.fullmatch(norm):
            raise ValueError(f"{source}: {field}[{k}]: {p!r} is not a stop-phrase (two or more plain words: "
                             "letters, digits, inner hyphens, single spaces)")
        out.append(norm)
    return out


@lru_cache(maxsize=None)
def _read_stop_phrases(path: str, mtime_ns: int) -> tuple[str, ...]:
    try:
        mapping = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"{path}: expected a mapping kind (food, place, ...) -> list of stop-phrases")
    phrases: dict[str, None] = {}
    for kind, entry in mapping.items():
        phrases.update(dict.fromkeys(_stop_phrase_list(entry, path, str(kind))))
    return tuple(phrases)


def load_stop_phrases(path: str | Path = STOP_PHRASES_FILE) -> tuple[str, ...]:
    """The stop-phrases of a shared list file (kind -> phrases), deduplicated, in file order."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: stop-phrase file not found")
    return _read_stop_phrases(str(path), path.stat().st_mtime_ns)


@dataclass(frozen=True)
class SynonymTable:
    """Per-class synonym noun phrases, in the dataset's class order."""

    classes: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]  # synonyms[c]: lowercase phrases, words separated by one space
    source: str = "<memory>"
    # multi-word names that are none of the classes (shared list + the table's own, less its synonyms)
    stop_phrases: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def phrases(self) -> list[tuple[str, int]]:
        """(phrase, class index) in class order."""
        return [(p, c) for c, ps in enumerate(self.synonyms) for p in ps]

    @classmethod
    def from_mapping(cls, mapping: Mapping, classes: Sequence[str] | None = None, source: str = "<memory>",
                     stop_file: str | Path | None = STOP_PHRASES_FILE) -> "SynonymTable":
        """``mapping``: class name -> synonyms, and optionally ``stop_phrases`` -> the table's own
        stop-phrases; ``stop_file``: the shared stop-phrase list added to them (None: none)."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{source}: expected a mapping class name -> list of synonym noun phrases")
        by_key = {str(k): v for k, v in mapping.items()}
        own_stops = (_stop_phrase_list(by_key.pop(STOP_PHRASES_KEY), source, STOP_PHRASES_KEY)
                     if STOP_PHRASES_KEY in by_key else [])
        keys = list(by_key)
        classes = tuple(classes) if classes is not None else tuple(keys)
        if STOP_PHRASES_KEY in classes:
            raise ValueError(f"{source}: {STOP_PHRASES_KEY!r} is a reserved key (the table's own stop-phrases), "
                             "not a class name")
        for c in classes:
            if c not in by_key or not by_key[c]:
                raise ValueError(f"{source}: class {c!r} has no synonym entry (every class of the dataset needs "
                                 f"a non-empty list of noun phrases)")
        extra = [k for k in keys if k not in classes]
        if extra:
            raise ValueError(f"{source}: {extra} are not classes of the dataset (classes: {list(classes)})")
        owner: dict[str, str] = {}
        synonyms = []
        for c in classes:
            entry = by_key[c]
            if isinstance(entry, str) or not isinstance(entry, (list, tuple)):
                raise ValueError(f"{source}: class {c!r}: expected a list of noun phrases, got {entry!r}")
            phrases = []
            for p in entry:
                if not isinstance(p, str):
                    raise ValueError(f"{source}: class {c!r}: synonym {p!r} is not a string")
                norm = " ".join(p.lower().split())
                if not _PHRASE_RE.fullmatch(norm):
                    raise ValueError(f"{source}: class {c!r}: synonym {p!r} is not a plain noun phrase "
                                     "(letters, digits, inner hyphens/apostrophes, single spaces)")
                if norm in owner:
                    raise ValueError(f"{source}: synonym {norm!r} is listed for both {owner[norm]!r} and {c!r}")
                owner[norm] = c
                phrases.append(norm)
            synonyms.append(tuple(phrases))
        for k, p in enumerate(own_stops):
            if p in owner:
                raise ValueError(f"{source}: {STOP_PHRASES_KEY}[{k}]: {p!r} is also a synonym of {owner[p]!r}")
        shared = load_stop_phrases(stop_file) if stop_file is not None else ()
        # the table's own synonyms win over the shared list ("hot dog": a class of COCO, no dog for VOC)
        stops = tuple(dict.fromkeys(p for p in (*shared, *own_stops) if p not in owner))
        return cls(classes, tuple(synonyms), source, stops)

    @classmethod
    def from_yaml(cls, path: str | Path, classes: Sequence[str] | None = None,
                  stop_file: str | Path | None = STOP_PHRASES_FILE) -> "SynonymTable":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: synonym file not found")
        try:
            mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from e
        return cls.from_mapping(mapping, classes, source=str(path), stop_file=stop_file)

    @classmethod
    def load(cls, dataset: str, classes: Sequence[str] | None = None,
             stop_file: str | Path | None = STOP_PHRASES_FILE) -> "SynonymTable":
        """``mlr_core/text/synonyms/<dataset>.yaml`` in the dataset's class order (``classes``, else the
        built-in list of :func:`mlr_core.data.datasets.builtin_classes`)."""
        if classes is None:
            classes = builtin_classes(dataset)
        return cls.from_yaml(SYNONYM_DIR / f"{dataset}.yaml", classes, stop_file)
