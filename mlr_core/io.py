"""Atomic writes: a stage's output either exists complete or not at all.

Everything is written next to its final path and moved into place with ``os.replace``, which is atomic
on POSIX filesystems, so a killed stage never leaves a half-written file that looks finished.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary shared files
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def replace_dir(src: str | Path, dst: str | Path) -> None:
    """Move directory ``src`` to ``dst``, replacing what is there; ``dst`` is never missing or half-written
    for longer than between two renames."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def one_line(text: str, limit: int) -> str:
    """``text`` for a one-line message: whitespace runs collapsed, cut after ``limit`` characters (" ..." added)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


LEARNED_META_KEY = "mlr_core"


def save_learned(path: str | Path, tensors: dict, *, classnames: list[str], config: dict,
                 extra: dict | None = None) -> None:
    """Save a method's learned tensors (safetensors, atomic) with what rebuilds the module around them:
    the class names, its config and any ``extra`` entries, as one JSON document (sorted keys) under one
    metadata key. (safetensors writes several metadata keys in a random order, so the same tensors would
    give a different file, and a different DVC hash, on every run.)"""
    from safetensors.torch import save_file

    meta = {"classnames": list(classnames), "config": config, **(extra or {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={LEARNED_META_KEY: json.dumps(meta, sort_keys=True)})


def read_learned_meta(path: str | Path) -> dict:
    """The metadata written by :func:`save_learned` (the tensors are not read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model here (run its training stage first)")
    with safe_open(str(path), "pt") as f:
        raw = (f.metadata() or {}).get(LEARNED_META_KEY)
    meta = json.loads(raw) if raw else {}
    if "classnames" not in meta or "config" not in meta:
        raise ValueError(f"{path}: not a saved model of this project (no '{LEARNED_META_KEY}' metadata with "
                         f"'classnames' and 'config'): re-run its training stage")
    return meta


def load_learned(path: str | Path) -> tuple[dict, dict]:
    """The ``(tensors, metadata)`` written by :func:`save_learned`, metadata JSON-decoded."""
    from safetensors.torch import load_file

    meta = read_learned_meta(path)
    return load_file(str(path)), meta
