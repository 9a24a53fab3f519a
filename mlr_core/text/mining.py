"""Caption mining: sentences from caption sources -> multi-hot class labels by the noun filter.

Sources (``kind``): ``coco`` (MS-COCO captions JSON, 2014 or 2017; also the tinyworld corpus),
``narratives`` (OpenImages localized narratives JSONL: one object a line with ``image_id`` and
``caption``) and ``text`` (one sentence a line, no image ids). Every kept caption gets the classes the
:class:`~mlr_core.text.noun_filter.NounFilter` finds as nouns; captions with no class are dropped.

Leakage guard: captions whose image id is an image of the evaluation (test) split are excluded (MS-COCO
train2017 captions describe val2014 test images; the reference code does not exclude them).

Options as in the reference: per-class template sentences (``"a photo of a {class}."`` and CLIP's 80
ImageNet templates, one-hot labelled), and the NUS-WIDE cap (each caption assigned to its rarest positive
class, at most ``cap_per_class`` per class).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlr_core.data.coco import read_coco_captions
from mlr_core.data.manifest import DatasetError
from mlr_core.text.noun_filter import SynonymTable, class_counts, label_sentences


@dataclass(frozen=True)
class Sentence:
    text: str
    source: str  # file name
    image_id: str | None


def read_narratives(path: str | Path) -> list[Sentence]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: localized narratives file not found")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                caption, image_id = row["caption"], row["image_id"]
            except (json.JSONDecodeError, KeyError, TypeError, RecursionError) as e:
                raise DatasetError(f"{path}:{n}: expected a JSON object with 'image_id' and 'caption' "
                                   f"({type(e).__name__}: {str(e)[:100]})") from None
            if not isinstance(caption, str) or not isinstance(image_id, (str, int)) or isinstance(image_id, bool):
                raise DatasetError(f"{path}:{n}: expected 'caption' a string and 'image_id' a string or integer, got "
                                   f"{type(caption).__name__} and {type(image_id).__name__}")
            if caption.strip():
                out.append(Sentence(caption.strip(), path.name, str(image_id)))
    return out


def read_text_lines(path: str | Path) -> tuple[list[Sentence], dict]:
    """One sentence a line. Empty lines are skipped and counted; a line that is not UTF-8 is reported by
    number and skipped (never a crash, never a silently mangled sentence)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: text corpus not found")
    out, empty, bad = [], 0, []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                bad.append(n)
                continue
            if line:
                out.append(Sentence(line, path.name, None))
            else:
                empty += 1
    if bad:
        print(f"{path}: {len(bad)} line(s) are not UTF-8 and were skipped (lines {bad[:10]}"
              f"{' ...' if len(bad) > 10 else ''})")
    return out, {"empty_lines": empty, "non_utf8_lines": len(bad)}


def read_source(kind: str, path: str | Path) -> tuple[list[Sentence], dict]:
    if kind == "coco":
        caps = read_coco_captions(path)
        return [Sentence(c.caption, Path(path).name, str(c.image_id)) for c in caps], {}
    if kind == "narratives":
        return read_narratives(path), {}
    if kind == "text":
        return read_text_lines(path)
    raise ValueError(f"caption source kind must be coco, narratives or text, got {kind!r}")


def template_sentences(classes: list[str], repeats: int) -> list[tuple[str, int]]:
    """The reference's per-class template sentences: ``repeats`` x "a photo of a {c}." + CLIP's 80 ImageNet
    templates, each with its class index."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    out = []
    for c, name in enumerate(classes):
        out += [(f"a photo of a {name}.", c)] * repeats
        out += [(t(name), c) for t in OPENAI_IMAGENET_TEMPLATES]
    return out


def cap_rarest(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Indices kept by the NUS-WIDE rule: each caption goes to its rarest positive class; at most ``cap``
    captions per class, a seeded random choice among more."""
    counts = labels.sum(0)
    rarity = np.where(labels > 0, counts[None, :], np.iinfo(np.int64).max)
    assigned = rarity.argmin(1)
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(labels.shape[1]):
        idx = np.flatnonzero(assigned == c)
        if len(idx) > cap:
            idx = np.sort(rng.choice(idx, cap, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, int)


def mine_captions(sources: list[tuple[str, str]], table: SynonymTable, *, exclude_image_ids: set[str],
                  template_repeats: int = 0, cap_per_class: int | None = None, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """-> (DataFrame[caption, source, image_id, labels], summary with per-class counts)."""
    sentences, notes = [], {}
    for kind, path in sources:
        s, note = read_source(kind, path)
        sentences += s
        notes.update({f"{Path(path).name}:{k}": v for k, v in note.items()})
    if not sentences:
        raise DatasetError(f"caption sources {[p for _, p in sources]}: no sentence at all (empty corpus)")
    leaked = [s for s in sentences if s.image_id is not None and s.image_id in exclude_image_ids]
    sentences = [s for s in sentences if s.image_id is None or s.image_id not in exclude_image_ids]
    labels, hit = label_sentences(table, [s.text for s in sentences])
    if not hit.any():
        raise DatasetError(f"caption sources {[p for _, p in sources]}: none of {len(sentences)} sentences names "
                           f"a class of {table.source} as a noun; check the synonym file and the dataset")
    kept = [s for s, h in zip(sentences, hit) if h]
    labels = labels[hit]
    if cap_per_class is not None:
        keep = cap_rarest(labels, cap_per_class, seed)
        kept, labels = [kept[i] for i in keep], labels[keep]
    rows = pd.DataFrame({"caption": [s.text for s in kept], "source": [s.source for s in kept],
                         "image_id": [s.image_id for s in kept], "labels": list(labels)})
    if template_repeats:
        tmpl = template_sentences(list(table.classes), template_repeats)
        onehot = np.zeros((len(tmpl), len(table.classes)), np.int8)
        onehot[np.arange(len(tmpl)), [c for _, c in tmpl]] = 1
        rows = pd.concat([rows, pd.DataFrame({"caption": [t for t, _ in tmpl], "source": "templates",
                                              "image_id": None, "labels": list(onehot)})], ignore_index=True)
    per_class, without = class_counts(np.stack(rows["labels"].to_numpy()), table.classes)
    summary = {"sentences_read": len(sentences) + len(leaked), "excluded_eval_images": len(leaked),
               "dropped_no_class": int((~hit).sum()), "kept": len(rows), "classes_without_captions": without,
               "per_class": per_class, **notes}
    return rows, summary


def load_synonyms(name_or_path: str, classes: list[str]) -> SynonymTable:
    """A built-in table by dataset name, or a YAML file; either way aligned to ``classes``."""
    if name_or_path.endswith((".yaml", ".yml")):
        return SynonymTable.from_yaml(name_or_path, classes)
    return SynonymTable.load(name_or_path, classes)


def write_mined(rows: pd.DataFrame, classes: list[str], summary: dict, out_path: str | Path,
                summary_path: str | Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlr_core.io import atomic_path, atomic_write_json

    labels = np.stack(rows["labels"].to_numpy()).astype(np.int8) if len(rows) else np.zeros((0, len(classes)), np.int8)
    columns = {"caption": rows["caption"].tolist(), "source": rows["source"].tolist(),
               "image_id": pa.array(rows["image_id"].tolist(), pa.string()),
               "labels": pa.FixedSizeListArray.from_arrays(pa.array(labels.ravel(), pa.int8()), len(classes))}
    # extra text columns (e.g. the LLM sentences' kind) ride along; readers that do not know them ignore them
    columns.update({c: pa.array(rows[c].tolist(), pa.string()) for c in rows.columns if c not in columns})
    table = pa.table(columns)
    table = table.replace_schema_metadata({b"classes": json.dumps(list(classes)).encode()})
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    atomic_write_json(summary_path, summary)


def read_mined(path: str | Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """-> (captions, ids, labels (N, C) int8, classes) of a mined-captions file."""
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    labels = t.column("labels").combine_chunks()
    n = t.num_rows
    return (t.column("caption").to_pylist(), [f"cap{i}" for i in range(n)],
            labels.values.to_numpy().reshape(n, -1).astype(np.int8), json.loads(t.schema.metadata[b"classes"]))
