"""Text-to-image provisioning: any diffusers text-to-image model, and the project's own tinyworld one.

:func:`load_t2i` loads ANY diffusers text-to-image pipeline (a Hugging Face id or a local folder) with
``DiffusionPipeline.from_pretrained``; offline, a model that is not on disk fails at once with a message
naming it. The tinyworld model is a stock ``StableDiffusionPipeline`` built from the pieces below, as in
Stable Diffusion: a CLIP BPE tokenizer (:func:`build_clip_tokenizer`, written offline from open_clip's
bundled vocabulary), the frozen tinyworld CLIP text tower converted to a ``transformers.CLIPTextModel``
(:func:`convert_open_clip_text`: its ``last_hidden_state`` is open_clip's per-token text features
before pooling and projection), a small ``AutoencoderKL`` (:func:`build_vae`) and a small
``UNet2DConditionModel`` on its latents (:func:`build_unet`). Training lives in
:mod:`mlr_core.models.t2i_pretrain`.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import torch

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
           "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class T2IUnavailableError(RuntimeError):
    """A text-to-image model is neither on disk nor downloadable from here."""


# --------------------------------------------------------------------------------------------- tokenizer
def _bytes_to_unicode() -> dict[int, str]:
    from open_clip.tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def build_clip_tokenizer(out_dir: str | Path, context_length: int = 32):
    """Write open_clip's bundled BPE (``bpe_simple_vocab_16e6.txt.gz``) as ``vocab.json`` + ``merges.txt``
    under ``out_dir`` and return a ``transformers.CLIPTokenizer`` on them (no network).

    Ids equal open_clip's tokenizer up to and including ``<|endoftext|>`` (49407; ``<|startoftext|>`` is
    49406), truncation included; padding is ``<|endoftext|>`` as in Stable Diffusion 1.x where open_clip pads
    with 0. (Padding with id 0, i.e. ``"!"``, as SD 2 does, would make every ``"!"`` in a caption a pad
    token.) Under CLIP's causal mask the padding never changes the features of the tokens before it.
    ``context_length`` is ``model_max_length`` (the tinyworld CLIP's context is 32).
    """
    from open_clip.tokenizer import default_bpe
    from transformers import CLIPTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]  # exactly the merges open_clip's SimpleTokenizer uses
    byte_tokens = list(_bytes_to_unicode().values())
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(vocab=str(out_dir / "vocab.json"), merges=str(out_dir / "merges.txt"),
                         model_max_length=context_length)


# ----------------------------------------------------------------------------------------- text encoder
def _open_clip_text_cfg(arch: str) -> dict:
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"{arch!r} is not an open_clip architecture")
    return cfg


def clip_text_config(arch: str):
    """The ``transformers.CLIPTextConfig`` of an open_clip arch's text tower (standard CLIP text towers only)."""
    from transformers import CLIPTextConfig

    cfg = _open_clip_text_cfg(arch)
    t = cfg["text_cfg"]
    if t.get("hf_model_name") or t.get("pool_type", "argmax") not in ("argmax", "last") or t.get("ls_init_value"):
        raise ValueError(f"{arch}: only plain CLIP text towers convert to CLIPTextModel")
    width = t.get("width", 512)
    return CLIPTextConfig(
        vocab_size=t.get("vocab_size", 49408), hidden_size=width,
        intermediate_size=int(width * t.get("mlp_ratio", 4.0)), num_hidden_layers=t.get("layers", 12),
        num_attention_heads=t.get("heads", 8), max_position_embeddings=t.get("context_length", 77),
        hidden_act="quick_gelu" if cfg.get("quick_gelu") else "gelu", layer_norm_eps=1e-5,
        projection_dim=cfg["embed_dim"], pad_token_id=49407, bos_token_id=49406, eos_token_id=49407)


def convert_open_clip_text(state: dict[str, torch.Tensor], arch: str):
    """A ``transformers.CLIPTextModel`` holding an open_clip CLIP's text tower (``state``: the CLIP's state
    dict). Its ``last_hidden_state`` equals open_clip's ``ln_final`` output per token (what Stable
    Diffusion conditions on); the projection is not part of CLIPTextModel and is dropped."""
    from transformers import CLIPTextModel

    config = clip_text_config(arch)
    w = config.hidden_size
    new = {
        "text_model.embeddings.token_embedding.weight": state["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": state["positional_embedding"],
        "text_model.final_layer_norm.weight": state["ln_final.weight"],
        "text_model.final_layer_norm.bias": state["ln_final.bias"],
    }
    for i in range(config.num_hidden_layers):
        src, dst = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        qkv_w, qkv_b = state[src + "attn.in_proj_weight"], state[src + "attn.in_proj_bias"]
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            new[dst + f"self_attn.{name}.weight"] = qkv_w[j * w:(j + 1) * w]
            new[dst + f"self_attn.{name}.bias"] = qkv_b[j * w:(j + 1) * w]
        pairs = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                 "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
        for a, b in pairs.items():
            new[dst + f"{b}.weight"] = state[src + f"{a}.weight"]
            new[dst + f"{b}.bias"] = state[src + f"{a}.bias"]
    model = CLIPTextModel(config)
    # key names as this transformers version spells them (with or without the ``text_model.`` prefix)
    prefixed = any(k.startswith("text_model.") for k in model.state_dict())
    new = {(k if prefixed else k.removeprefix("text_model.")): v.detach().float().contiguous()
           for k, v in new.items()}
    missing, unexpected = model.load_state_dict(new, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"text tower conversion: missing {missing}, unexpected {unexpected}")
    return model.eval().requires_grad_(False)


def load_open_clip_state(arch: str, pretrained: str | Path | None) -> dict[str, torch.Tensor]:
    """The state dict of an open_clip CLIP (``pretrained``: a checkpoint file, or None for random weights)."""
    import open_clip

    model = open_clip.create_model(arch, pretrained=str(pretrained) if pretrained else None)
    return model.state_dict()


# -------------------------------------------------------------------------------------- VAE, UNet, sched
def build_vae(*, channels: tuple[int, ...] = (32, 64, 64), latent_channels: int = 4, layers_per_block: int = 1,
              norm_groups: int = 16, sample_size: int = 64, scaling_factor: float = 1.0):
    """A small ``AutoencoderKL``: ``len(channels) - 1`` halvings (64 px -> 16x16 latents with 3 levels)."""
    from diffusers import AutoencoderKL

    n = len(channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(channels),
        layers_per_block=layers_per_block, latent_channels=latent_channels, norm_num_groups=norm_groups,
        sample_size=sample_size, scaling_factor=scaling_factor)


def build_unet(*, sample_size: int = 16, latent_channels: int = 4, channels: tuple[int, ...] = (64, 128, 128),
               cross_attn: tuple[bool, ...] = (False, True, True), layers_per_block: int = 1,
               cross_attention_dim: int = 128, head_dim: int = 32, norm_groups: int = 16):
    """A small ``UNet2DConditionModel`` on the latents, conditioned on the text tower's hidden states."""
    from diffusers import UNet2DConditionModel

    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cross_attn)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cross_attn))
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=latent_channels, out_channels=latent_channels,
        down_block_types=down, up_block_types=up, block_out_channels=tuple(channels),
        layers_per_block=layers_per_block, cross_attention_dim=cross_attention_dim,
        # diffusers' legacy naming: attention_head_dim is the number of heads per block
        attention_head_dim=tuple(max(1, c // head_dim) for c in channels),
        norm_num_groups=norm_groups)


def build_scheduler(kind: str = "dpm", prediction_type: str = "epsilon"):
    """The training noise schedule (SD's scaled-linear betas) as a sampler: ``dpm`` (DPMSolverMultistep,
    good in 10-20 steps) or ``ddim``."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    common = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  prediction_type=prediction_type, steps_offset=1)
    if kind == "dpm":
        return DPMSolverMultistepScheduler(**common)
    if kind == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False)
    raise ValueError(f"unknown scheduler {kind!r} (dpm, ddim)")


def assemble_pipeline(tokenizer, text_encoder, vae, unet, scheduler):
    """A stock ``StableDiffusionPipeline`` from the parts (no safety checker: synthetic shapes only)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def save_pipeline(pipe, out_dir: str | Path, fp16: bool = True) -> None:
    """``save_pretrained`` with safetensors; fp16 weights on disk halve the folder (it ships in git).
    Loading casts back: :func:`load_t2i` asks for the dtype it wants."""
    if fp16:
        pipe = pipe.to(torch.float16)
    pipe.save_pretrained(str(out_dir), safe_serialization=True)


# ------------------------------------------------------------------------------------------------ load
def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def load_t2i(model_id_or_path: str | Path, device: str = "auto", dtype: str | torch.dtype = "fp32"):
    """Load any diffusers text-to-image pipeline with ``DiffusionPipeline.from_pretrained``.

    ``model_id_or_path``: a local pipeline folder (with ``model_index.json``) or a Hugging Face id. A
    missing folder, or an id that is not in the local cache while offline / unreachable, raises
    :class:`T2IUnavailableError` at once, naming the model.
    """
    from diffusers import DiffusionPipeline

    from mlr_core.models.clip import _reachable, resolve_device

    torch_dtype = _DTYPES[dtype] if isinstance(dtype, str) else dtype
    name = str(model_id_or_path)
    path = Path(name)
    # "org/name" is a hub id unless its first part is a local folder (models/tinyworld-t2l is a typo of a folder)
    local = (path.exists() or name.startswith((".", "/")) or name.count("/") != 1
             or Path(name.split("/")[0]).is_dir())
    if local:
        if not (path / "model_index.json").is_file():
            import difflib

            near = difflib.get_close_matches(path.name, [p.name for p in path.parent.glob("*") if p.is_dir()]
                                             if path.parent.is_dir() else [], n=1)
            hint = f"; did you mean {str(path.parent / near[0])!r}?" if near else ""
            raise T2IUnavailableError(
                f"synthesis.model={name!r}: no diffusers pipeline folder there (model_index.json missing){hint}")
        pipe = DiffusionPipeline.from_pretrained(str(path), dtype=torch_dtype)
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(name, "model_index.json"), str)
        if not cached and (_hf_offline() or not _reachable("huggingface.co")):
            why = "HF_HUB_OFFLINE is set" if _hf_offline() else "huggingface.co cannot be reached"
            raise T2IUnavailableError(
                f"text-to-image model {name!r} is not in the local Hugging Face cache and {why}. Download it on "
                f"a machine with internet (python -c \"from diffusers import DiffusionPipeline; "
                f"DiffusionPipeline.from_pretrained('{name}')\"), copy ~/.cache/huggingface here, or use a "
                f"local pipeline folder such as models/tinyworld-t2i.")
        try:
            pipe = DiffusionPipeline.from_pretrained(name, dtype=torch_dtype,
                                                     local_files_only=cached)
        except OSError as e:
            raise T2IUnavailableError(f"text-to-image model {name!r} could not be loaded: {e}") from e
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe.to(resolve_device(device))


def fetch_pipeline(hub_id: str, folder: str | Path) -> Path:
    """Download (once, online) a Hugging Face diffusers pipeline into ``folder``, so that params can name a
    local folder (``synthesis.model``: a DVC dep like any input)."""
    from huggingface_hub import snapshot_download

    from mlr_core.models.clip import _reachable

    if _hf_offline() or not _reachable("huggingface.co"):
        why = "HF_HUB_OFFLINE is set" if _hf_offline() else "huggingface.co cannot be reached"
        raise T2IUnavailableError(f"cannot fetch {hub_id!r}: {why}; run this on a machine with internet and copy "
                                  f"the folder here")
    try:
        snapshot_download(hub_id, local_dir=str(folder))
    except Exception as e:  # noqa: BLE001 - hub errors come in many types; one message naming the id
        raise T2IUnavailableError(f"cannot fetch {hub_id!r}: {type(e).__name__}: {e}") from None
    if not (Path(folder) / "model_index.json").is_file():
        raise T2IUnavailableError(f"{hub_id!r} is not a diffusers pipeline (no model_index.json)")
    return Path(folder)


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m mlr_core.models.t2i")
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download a Hugging Face diffusers pipeline into a local folder")
    f.add_argument("hub_id")
    f.add_argument("folder")
    args = ap.parse_args(argv)
    try:
        folder = fetch_pipeline(args.hub_id, args.folder)
    except T2IUnavailableError as e:
        sys.exit(f"error: {e}")
    print(f"{folder}: set synthesis.model to this folder")


if __name__ == "__main__":
    main()
