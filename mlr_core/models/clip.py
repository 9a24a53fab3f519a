"""One place that turns params into a frozen CLIP.

``arch`` is any open_clip model name (the project's own configs in ``configs/`` are registered too, e.g.
``tinyworld-RN``); ``pretrained`` is a local checkpoint file, an open_clip tag (``openai``,
``laion2b_s34b_b79k`` ...), or None for random weights. The pipeline always names a local file
(``model.pretrained``), so that DVC tracks the weights as a dep of every stage that uses them; two commands
write such a file (README, Models)::

    python -m mlr_core.models.clip fetch RN50 openai models/RN50-openai.pt     # online, once
    python -m mlr_core.models.clip random RN50 models/RN50-random.safetensors  # seeded random weights

Offline, a tag whose weights are not in the local cache fails at once with a message saying how to get
them, instead of a minute of retries.
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
from open_clip.transform import PreprocessCfg, image_transform_v2

from mlr_core.io import file_sha256, one_line
from mlr_core.models import require_hf_support


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither on disk nor downloadable from here."""


class CheckpointError(ValueError):
    """``model.pretrained`` names a file that is not a loadable checkpoint of ``model.arch``."""


def native_image_size(arch: str) -> int:
    """The input resolution ``arch``'s config (and so its checkpoints) are made for."""
    size = (open_clip.get_model_config(arch) or {}).get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def regrid_visual(model: torch.nn.Module, image_size: int) -> None:
    """Make a loaded CLIP's image tower take ``image_size`` inputs: the positional embedding of the ResNet
    attention pool or of the ViT patch grid is resized (open_clip's bicubic recipe,
    :func:`mlr_core.models.features.resize_grid_pos_embed`), as open_clip does for a ViT checkpoint loaded at
    another size, and the tower's size and preprocessing config follow."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    from mlr_core.models.features import resize_grid_pos_embed

    visual = model.visual
    if isinstance(visual, ModifiedResNet) and getattr(visual, "attnpool", None) is not None:
        pool = visual.attnpool
        side = int(round((pool.positional_embedding.shape[0] - 1) ** 0.5))
        new = image_size // 32
        pos = resize_grid_pos_embed(pool.positional_embedding.detach(), (side, side), (new, new))
        pool.positional_embedding = torch.nn.Parameter(pos, requires_grad=False)
        visual.image_size = image_size
    elif isinstance(visual, VisionTransformer):
        patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else visual.patch_size
        new = (image_size // patch, image_size // patch)
        pos = resize_grid_pos_embed(visual.positional_embedding.detach(), tuple(visual.grid_size), new)
        visual.positional_embedding = torch.nn.Parameter(pos, requires_grad=False)
        visual.grid_size, visual.image_size = new, (image_size, image_size)
    else:
        raise ValueError(f"features.image_size={image_size}: the {type(visual).__name__} image tower cannot be "
                         f"re-gridded from its native size; set features.image_size to null")
    size = visual.preprocess_cfg.get("size")
    visual.preprocess_cfg = {**visual.preprocess_cfg,
                             "size": (image_size, image_size) if isinstance(size, (tuple, list)) else image_size}


def _bad_checkpoint(arch: str, pretrained: str, error: Exception) -> str:
    return (f"model.pretrained={pretrained!r}: not a loadable {arch} checkpoint ({type(error).__name__}: "
            f"{one_line(str(error), 300)}); "
            f"expected an open_clip state dict of model.arch={arch} (.pt / .bin / .safetensors, e.g. written by "
            f"`python -m mlr_core.models.clip fetch` or `random`)")


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
    weights_id: str  # identifies arch + weights + precision (not the resolution): what a trained artifact
    #                  records, so that it is never applied with another model


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


HF_HUB_PREFIX = "hf-hub:"


def _check_hub_model_available(arch: str) -> None:
    """An ``hf-hub:`` model offline: fail at once unless its files are in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    repo = arch[len(HF_HUB_PREFIX):].strip("/")
    if not repo or repo.count("/") != 1:
        raise ValueError(f"model.arch={arch!r}: expected {HF_HUB_PREFIX}<organisation>/<repository>")
    if isinstance(try_to_load_from_cache(repo, "open_clip_config.json"), str):
        return
    where = ("HF_HUB_OFFLINE is set" if _hf_offline() else
             "huggingface.co cannot be reached" if not _reachable("huggingface.co") else None)
    if where:
        raise WeightsUnavailableError(
            f"model.arch={arch!r}: the repository's files are not in the local Hugging Face cache and {where}. "
            f"Fetch them once on a machine with internet (huggingface-cli download {repo}) and copy the cache here.")


def _check_weights_available(arch: str, tag: str) -> None:
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg or _tag_is_cached(cfg):
        return
    source = cfg.get("hf_hub") or cfg.get("url") or "?"
    how = (f"On a machine with internet run `python -m mlr_core.models.clip fetch {arch} {tag} "
           f"models/{arch}-{tag}.pt`, copy the file here and set model.pretrained to it (the pipeline takes local "
           f"checkpoint files, which DVC tracks).")
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
    weights_id: str
    hub = arch.startswith(HF_HUB_PREFIX)
    if hub:  # config and weights from a Hugging Face repo, as open_clip takes them
        if pretrained is not None:
            raise ValueError(f"model.pretrained={pretrained!r}: an {HF_HUB_PREFIX} model.arch brings its own "
                             f"weights; set model.pretrained to null")
        _check_hub_model_available(arch)
        weights_id = arch
    elif arch not in open_clip.list_models():
        raise ValueError(_unknown_arch(arch))
    elif pretrained is None:
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
    require_hf_support(arch)
    # Weights load at their own resolution; another features.image_size re-grids the positional embeddings
    # after loading (below; a hub model's native size is known only once it is built). Random weights are simply
    # built at the requested size.
    regrid = image_size is not None and (hub or (pretrained is not None and image_size != native_image_size(arch)))
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=pretrained, precision=precision, device=dev,
            **({"force_image_size": image_size} if image_size and not regrid else {}))
    except Exception as e:  # open_clip, torch and safetensors each raise their own kinds for a bad file
        raise CheckpointError(_bad_checkpoint(arch, pretrained, e)) from e
    if regrid:
        regrid_visual(model, image_size)
        preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg),
                                        is_train=False)
    model.eval().requires_grad_(False)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    fingerprint = hashlib.sha256(
        f"{arch}|{weights_id}|{size}|{precision}|{preprocess}".encode()).hexdigest()[:16]
    weights = hashlib.sha256(f"{arch}|{weights_id}|{precision}".encode()).hexdigest()[:16]
    return LoadedClip(model, preprocess, open_clip.get_tokenizer(arch), arch, pretrained, size, fingerprint, dev,
                      weights)


def model_info(clip: LoadedClip) -> dict:
    """What identifies the model in a metrics file, a cache or an artifact."""
    return {"arch": clip.arch, "pretrained": clip.pretrained, "weights_id": clip.weights_id,
            "fingerprint": clip.fingerprint, "image_size": clip.image_size}


def write_random_checkpoint(arch: str, out: str | Path, seed: int = 0) -> Path:
    """A seeded random-weight checkpoint of ``arch`` (safetensors, byte-identical for the same seed): the
    pipeline's way to run a real architecture without its weights."""
    from safetensors.torch import save_file

    from mlr_core.io import atomic_path

    if arch not in open_clip.list_models():
        raise ValueError(_unknown_arch(arch))
    torch.manual_seed(seed)
    require_hf_support(arch)
    model = open_clip.create_model(arch, pretrained=None)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"mlr_core": f"random weights, seed {seed}"})
    return Path(out)


def fetch_checkpoint(arch: str, tag: str, out: str | Path) -> Path:
    """Download (once, online) the weights of an open_clip tag and copy the checkpoint file to ``out``, so
    that params can name a local file."""
    import shutil

    if arch not in open_clip.list_models():
        raise ValueError(_unknown_arch(arch))
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise ValueError(f"{tag!r} is not an open_clip tag of {arch}; tags: "
                         f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}")
    _check_weights_available(arch, tag)
    src = open_clip.download_pretrained(cfg)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out)
    return out


def _unknown_arch(arch: str) -> str:
    import difflib

    known = open_clip.list_models()
    by_lower = {name.lower(): name for name in known}
    close = [by_lower[m] for m in difflib.get_close_matches(arch.lower(), list(by_lower), n=3, cutoff=0.6)]
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (f"model.arch={arch!r} is not an open_clip architecture; {hint}{len(known)} are known "
            f"(python -c 'import open_clip; print(open_clip.list_models())')")


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m mlr_core.models.clip",
                                 description="write a local CLIP checkpoint file for model.pretrained")
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="copy an open_clip tag's weights (downloaded once, online) to a file")
    f.add_argument("arch")
    f.add_argument("tag")
    f.add_argument("out")
    r = sub.add_parser("random", help="write a seeded random-weight checkpoint of an architecture")
    r.add_argument("arch")
    r.add_argument("out")
    r.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if args.command == "fetch":
            out = fetch_checkpoint(args.arch, args.tag, args.out)
        else:
            out = write_random_checkpoint(args.arch, args.out, args.seed)
    except (ValueError, WeightsUnavailableError) as e:
        sys.exit(f"error: {e}")
    print(f"{out}: set model.pretrained to this path (and model.arch to {args.arch})")


if __name__ == "__main__":
    main()
