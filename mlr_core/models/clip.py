"""One place that turns params into a frozen CLIP.

``arch`` is any open_clip model name (the project's own configs in ``configs/`` are registered too, e.g.
``tinyworld-RN``); ``pretrained`` is an open_clip tag (``openai``, ``laion2b_s34b_b79k`` ...), a local
checkpoint file, or None for random weights. Tags are fetched into open_clip's usual cache when online;
offline, a missing tag fails at once with a message saying how to get the weights, instead of a minute of
retries.
"""
from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import open_clip
import torch

from mlr_core.io import file_sha256

class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither on disk nor downloadable from here."""


@dataclass
class LoadedClip:
    model: torch.nn.Module  # frozen, eval mode
    preprocess: Callable  # PIL image -> tensor, open_clip's eval transform at `image_size`
    tokenizer: Callable
    arch: str
    pretrained: str | None
    image_size: int
    fingerprint: str  # identifies weights + resolution + preprocessing; stored in every feature cache
    device: torch.device


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _tag_is_cached(cfg: dict) -> bool:
    """Whether open_clip would find the tag's weights without the network."""
    from huggingface_hub import try_to_load_from_cache

    if cfg.get("file"):
        return Path(cfg["file"]).is_file()
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)
        names = [filename or "open_clip_pytorch_model.bin"]
        names += [n.rsplit(".", 1)[0] + ".safetensors" for n in names]
        return any(isinstance(try_to_load_from_cache(repo.rstrip("/"), n), str) for n in names)
    url = cfg.get("url", "")
    return bool(url) and (Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)).is_file()


def _check_weights_available(arch: str, tag: str) -> None:
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg or _tag_is_cached(cfg):
        return
    source = cfg.get("hf_hub") or cfg.get("url") or "?"
    how = (f"Get them on a machine with internet (python -c \"import open_clip; "
           f"open_clip.create_model('{arch}', pretrained='{tag}')\") and copy the Hugging Face cache "
           f"(~/.cache/huggingface) here, or download the checkpoint file and set model.pretrained to its path.")
    if _hf_offline():
        raise WeightsUnavailableError(
            f"model.pretrained={tag!r}: weights for {arch}/{tag} ({source}) are not in the local cache and "
            f"HF_HUB_OFFLINE is set. {how}")
    if not _reachable("huggingface.co"):
        raise WeightsUnavailableError(
            f"model.pretrained={tag!r}: weights for {arch}/{tag} ({source}) are not in the local cache and "
            f"huggingface.co cannot be reached. {how}")


def load_clip(arch: str, pretrained: str | None, device: str = "auto", precision: str = "fp32",
              image_size: int | None = None) -> LoadedClip:
    """Build a frozen open_clip CLIP from params; see the module docstring for ``pretrained``."""
    if arch not in open_clip.list_models():
        raise ValueError(f"model.arch={arch!r} is not an open_clip architecture; known: "
                         f"{', '.join(open_clip.list_models()[:12])}, ... (open_clip.list_models())")
    weights_id: str
    if pretrained is None:
        weights_id = "random-init"
    elif pretrained in open_clip.list_pretrained_tags_by_model(arch):
        _check_weights_available(arch, pretrained)
        weights_id = f"tag:{pretrained}"
    else:
        path = Path(pretrained)
        if not path.is_file():
            tags = open_clip.list_pretrained_tags_by_model(arch)
            raise FileNotFoundError(
                f"model.pretrained={pretrained!r} is neither a file nor an open_clip tag for {arch} "
                f"(tags: {', '.join(tags) if tags else 'none'})")
        weights_id = f"sha256:{file_sha256(path)}"
    dev = resolve_device(device)
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch, pretrained=pretrained, precision=precision, device=dev,
        **({"force_image_size": image_size} if image_size else {}))
    model.eval().requires_grad_(False)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    fingerprint = hashlib.sha256(
        f"{arch}|{weights_id}|{size}|{precision}|{preprocess}".encode()).hexdigest()[:16]
    return LoadedClip(model, preprocess, open_clip.get_tokenizer(arch), arch, pretrained, size, fingerprint, dev)
