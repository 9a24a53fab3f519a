"""Per-class synonym tables: which noun phrases name each class of a dataset, in its class order.

The tables the project ships are ``synonyms/<dataset>.yaml`` next to this module (class name -> list of
phrases); any other file of that shape can be given (``captions.synonyms``, ``llm.synonyms``). A table is
validated when read: every class has a non-empty list, phrases are plain lowercase noun phrases, and no phrase
belongs to two classes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from mlr_core.data.datasets import builtin_classes

SYNONYM_DIR = Path(__file__).resolve().parent / "synonyms"
_PHRASE_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*(?: [a-z0-9]+(?:[-'][a-z0-9]+)*)*")


@dataclass(frozen=True)
class SynonymTable:
    """Per-class synonym noun phrases, in the dataset's class order."""

    classes: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]  # synonyms[c]: lowercase phrases, words separated by one space
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def phrases(self) -> list[tuple[str, int]]:
        """(phrase, class index) in class order."""
        return [(p, c) for c, ps in enumerate(self.synonyms) for p in ps]

    @classmethod
    def from_mapping(cls, mapping: Mapping, classes: Sequence[str] | None = None,
                     source: str = "<memory>") -> "SynonymTable":
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{source}: expected a mapping class name -> list of synonym noun phrases")
        keys = [str(k) for k in mapping]
        classes = tuple(classes) if classes is not None else tuple(keys)
        by_key = {str(k): v for k, v in mapping.items()}
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
        return cls(classes, tuple(synonyms), source)

    @classmethod
    def from_yaml(cls, path: str | Path, classes: Sequence[str] | None = None) -> "SynonymTable":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: synonym file not found")
        try:
            mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from e
        return cls.from_mapping(mapping, classes, source=str(path))

    @classmethod
    def load(cls, dataset: str, classes: Sequence[str] | None = None) -> "SynonymTable":
        """``mlr_core/text/synonyms/<dataset>.yaml`` in the dataset's class order (``classes``, else the
        built-in list of :func:`mlr_core.data.datasets.builtin_classes`)."""
        if classes is None:
            classes = builtin_classes(dataset)
        return cls.from_yaml(SYNONYM_DIR / f"{dataset}.yaml", classes)
