"""Feature extraction from a frozen open_clip model: global + dense image features, per-token text
features, and a text encoder fed learnable prompt embeddings.

Everything here re-implements the tail of open_clip's forward passes (open_clip_torch 3.3.0) instead of
calling ``model.encode_image`` a second time, so that the global feature and the dense map come from ONE
pass of the visual trunk and the dense features go through exactly the layers the pooled feature goes
through. The operations mirror open_clip's code line by line (same ops, same order, same casts) so the
global features match ``encode_image`` / ``encode_text`` to float rounding, which the tests check.

Supported towers
----------------
* image: ``ModifiedResNet`` (attention pool) and ``VisionTransformer`` with ``pool_type`` 'tok' or 'avg'
  (with or without ``final_ln_after_pool``). Attentional-pooler ViTs (CoCa), ``pool_type='none'`` and timm
  towers raise ``NotImplementedError``: they have no per-location feature in the joint space.
* text: ``CLIP`` (text tower flattened into the model) and ``CustomTextCLIP`` whose ``.text`` is an
  open_clip ``TextTransformer`` without a CLS embedding. HF text towers and CoCa's appended CLS token raise
  ``NotImplementedError``.

Grad mode is left to the caller: wrap the frozen paths in ``torch.no_grad()`` (they work there); the prompt
path (:func:`encode_text_from_embeddings`, :class:`PromptTextEncoder`) needs grad mode for training ctx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import TextTransformer, VisionTransformer, text_global_pool

__all__ = [
    "ImageFeatures",
    "TextFeatures",
    "encode_image_features",
    "encode_text_features",
    "encode_text_from_embeddings",
    "PromptTextEncoder",
    "resize_grid_pos_embed",
]


# --------------------------------------------------------------------------------------------------------
# image tower
# --------------------------------------------------------------------------------------------------------


@dataclass
class ImageFeatures:
    global_: torch.Tensor  # (B, D) == model.encode_image(images) (unnormalised)
    dense: torch.Tensor  # (B, H*W, D) per-location features in the joint space, row-major over (H, W)
    grid: tuple[int, int]  # (H, W)


def resize_grid_pos_embed(
    pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], n_prefix: int = 1
) -> torch.Tensor:
    """Resize a (n_prefix + h*w, C) positional embedding to ``new_grid``; prefix rows are kept.

    Uses the same recipe as open_clip's ``resize_pos_embed`` (bicubic, antialias, align_corners=False) so a
    model evaluated off its native resolution sees the embedding open_clip itself would build when
    re-gridding a checkpoint. Returns ``pos`` itself when the grid is unchanged, which keeps the native
    resolution path bit-identical to open_clip's forward.
    """
    old_grid, new_grid = tuple(old_grid), tuple(new_grid)
    if old_grid == new_grid:
        return pos
    if pos.shape[0] != n_prefix + old_grid[0] * old_grid[1]:
        raise ValueError(
            f"positional embedding has {pos.shape[0]} rows, expected {n_prefix} + {old_grid[0]}x{old_grid[1]}"
        )
    prefix, grid = pos[:n_prefix], pos[n_prefix:]
    # bicubic/antialias kernels are not implemented for half types on every backend, so resample in fp32
    grid = grid.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1).to(pos.dtype)
    return torch.cat([prefix, grid], dim=0)


def _input_device_dtype(visual: nn.Module) -> tuple[torch.device, torch.dtype]:
    # the stem conv decides what the tower accepts: after open_clip's convert_weights_to_lp the convs are
    # half precision while e.g. ViT's class_embedding (the first parameter) stays fp32
    conv1 = getattr(visual, "conv1", None)
    p = conv1.weight if isinstance(conv1, nn.Conv2d) else next(visual.parameters())
    return p.device, p.dtype


def _rn_features(visual: ModifiedResNet, images: torch.Tensor) -> ImageFeatures:
    if getattr(visual, "attnpool", None) is None:
        raise NotImplementedError("ModifiedResNet without an attention pool has no joint-space dense features")
    pool = visual.attnpool

    # the trunk, exactly ModifiedResNet.forward minus the pool
    x = visual.stem(images)
    x = visual.layer1(x)
    x = visual.layer2(x)
    x = visual.layer3(x)
    x = visual.layer4(x)

    B, C, H, W = x.shape
    n_pos = pool.positional_embedding.shape[0] - 1
    side = math.isqrt(n_pos)
    if side * side != n_pos:
        raise NotImplementedError(f"attention pool positional embedding with {n_pos} locations is not a square grid")
    pos = resize_grid_pos_embed(pool.positional_embedding, (side, side), (H, W))

    # from here on: AttentionPool2d.forward verbatim, with `pos` in place of the stored embedding
    x = x.reshape(B, C, H * W).permute(2, 0, 1)  # NCHW -> (HW)NC
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (HW+1)NC
    x = x + pos[:, None, :].to(x.dtype)  # (HW+1)NC
    pooled, _ = F.multi_head_attention_forward(
        query=x, key=x, value=x,
        embed_dim_to_check=x.shape[-1],
        num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.,
        out_proj_weight=pool.c_proj.weight,
        out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True,
        training=pool.training,
        need_weights=False,
    )
    global_ = pooled[0]

    # The pooled feature is c_proj(sum_j a_j v_proj(x_j)) with sum_j a_j = 1, so c_proj(v_proj(x_loc)) is
    # the per-location term that the pool averages: the dense map lives in the same space as the global
    # feature, and the (image-independent) attention mixing is the only thing left out.
    loc = x[1:].permute(1, 0, 2)  # (B, HW, C), positional embedding included
    dense = pool.c_proj(pool.v_proj(loc))
    return ImageFeatures(global_=global_, dense=dense, grid=(H, W))


def _vit_features(visual: VisionTransformer, images: torch.Tensor) -> ImageFeatures:
    if getattr(visual, "attn_pool", None) is not None:
        raise NotImplementedError(
            "VisionTransformer with an attentional pooler (CoCa-style) outputs query tokens, not patch features"
        )
    if visual.pool_type not in ("tok", "avg"):
        raise NotImplementedError(f"VisionTransformer pool_type={visual.pool_type!r} has no single global feature")

    # VisionTransformer._embeds, with the positional embedding re-gridded to the actual patch grid
    x = visual.conv1(images)  # (B, width, gh, gw)
    B, width, gh, gw = x.shape
    x = x.reshape(B, width, -1).permute(0, 2, 1)  # (B, gh*gw, width)
    x = torch.cat([visual.class_embedding.view(1, 1, -1).expand(B, -1, -1).to(x.dtype), x], dim=1)
    pos = resize_grid_pos_embed(visual.positional_embedding, tuple(visual.grid_size), (gh, gw))
    x = x + pos.to(x.dtype)
    # patch dropout is deliberately skipped: it is the identity in eval mode, and in train mode it would
    # delete grid locations, which a dense map cannot have.
    x = visual.ln_pre(x)
    x = visual.transformer(x)

    # VisionTransformer._pool / _global_pool for the non-attentional-pool case
    if visual.final_ln_after_pool:
        pooled = x[:, 1:].mean(dim=1) if visual.pool_type == "avg" else x[:, 0]
        pooled = visual.ln_post(pooled)
        # open_clip leaves the tokens un-normed in this mode; the joint space still needs ln_post before proj
        tokens = visual.ln_post(x[:, 1:])
    else:
        x = visual.ln_post(x)
        pooled = x[:, 1:].mean(dim=1) if visual.pool_type == "avg" else x[:, 0]
        tokens = x[:, 1:]

    if visual.proj is not None:
        pooled = pooled @ visual.proj
        tokens = tokens @ visual.proj
    return ImageFeatures(global_=pooled, dense=tokens, grid=(gh, gw))


def encode_image_features(model: nn.Module, images: torch.Tensor) -> ImageFeatures:
    """Global and dense image features from ONE forward pass of the visual tower.

    ``model`` is an open_clip ``CLIP`` / ``CustomTextCLIP`` (anything with ``.visual``) or a bare visual
    tower. ``images`` are moved to the tower's device and dtype.

    * ResNet (attention pool): the trunk runs to the last feature map; the pool input is
      [mean token; locations] + positional embedding; ``global_`` is the pool output for the mean token
      computed exactly as ``AttentionPool2d.forward``; ``dense`` = ``c_proj(v_proj(x_loc + pos_loc))``.
    * ViT ('tok' / 'avg' pooling): ``global_`` as ``VisionTransformer.forward`` computes it;
      ``dense`` = ``ln_post(patch tokens) @ proj``.

    For an input resolution other than the model's, the positional embedding's spatial part is resized
    bicubically (prefix row kept), e.g. RN50 at 448 gives a 14x14 map, ViT-B/32 at 448 a 14x14 map.
    """
    visual = getattr(model, "visual", model)
    device, dtype = _input_device_dtype(visual)
    images = images.to(device=device, dtype=dtype)
    if isinstance(visual, ModifiedResNet):
        return _rn_features(visual, images)
    if isinstance(visual, VisionTransformer):
        return _vit_features(visual, images)
    raise NotImplementedError(
        f"dense features are implemented for ModifiedResNet and VisionTransformer towers, not {type(visual).__name__}"
    )


# --------------------------------------------------------------------------------------------------------
# text tower
# --------------------------------------------------------------------------------------------------------


@dataclass
class TextFeatures:
    global_: torch.Tensor  # (B, D) == model.encode_text(tokens)
    tokens: torch.Tensor  # (B, L, D) every token's projected output (ln_final then text_projection)
    lengths: torch.Tensor  # (B,) valid tokens incl. SOT and EOT; positions >= length are padding


@dataclass(frozen=True)
class _TextTower:
    """The pieces of an open_clip text tower, wherever the model keeps them (CLIP flattens them into itself,
    CustomTextCLIP keeps them on ``.text``)."""

    token_embedding: nn.Embedding
    positional_embedding: torch.Tensor
    transformer: nn.Module
    ln_final: nn.Module
    text_projection: Optional[object]
    pool_type: str
    eos_id: Optional[int]
    pad_id: int
    attn_mask: Optional[torch.Tensor]
    pad_mask_fn: Optional[Callable[[torch.Tensor, int, torch.dtype], torch.Tensor]]


def _text_tower(model: nn.Module) -> _TextTower:
    text = getattr(model, "text", None)
    if text is None and hasattr(model, "token_embedding") and hasattr(model, "transformer"):
        # open_clip CLIP: the text tower's modules live directly on the model
        return _TextTower(**_tower_modules(model), pool_type=getattr(model, "text_pool_type", "argmax"),
                          eos_id=getattr(model, "text_eos_id", None),
                          pad_id=0,  # CLIP does not keep the cfg's pad_id; 0 is what open_clip's tokenizers pad with
                          attn_mask=model.attn_mask, pad_mask_fn=None)
    if isinstance(model, TextTransformer):
        text = model
    if isinstance(text, TextTransformer):
        if text.cls_emb is not None:
            raise NotImplementedError("text towers with an appended CLS embedding (CoCa) are not supported")
        return _TextTower(**_tower_modules(text), pool_type=text.pool_type, eos_id=getattr(text, "eos_id", None),
                          pad_id=text.pad_id, attn_mask=text.attn_mask,
                          pad_mask_fn=text._build_additive_mask if text.use_pad_mask else None)
    raise NotImplementedError(
        f"token-level text features need an open_clip TextTransformer text tower, got {type(text or model).__name__}"
    )


def _tower_modules(owner: nn.Module) -> dict:
    """The modules every open_clip text tower has under the same names, on whichever object holds them."""
    names = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    return {name: getattr(owner, name) for name in names}


def _project_text(tower: _TextTower, x: torch.Tensor) -> torch.Tensor:
    proj = tower.text_projection
    if proj is None:
        return x
    if isinstance(proj, nn.Linear):
        return proj(x)
    return x @ proj


def _text_lengths(tower: _TextTower, token_ids: torch.Tensor) -> torch.Tensor:
    """Valid length = index of the token the tower pools at (the EOT) + 1, located the way open_clip
    locates it, so ``tokens[b, lengths[b] - 1]`` is the token behind ``global_[b]``."""
    if tower.pool_type == "eos" and tower.eos_id is not None:
        eot = (token_ids == tower.eos_id).int().argmax(dim=-1)
    elif tower.pool_type == "argmax":
        eot = token_ids.argmax(dim=-1)
    else:
        # 'first' / 'last' pooling says nothing about where the text ends: use the last non-pad token
        not_pad = (token_ids != tower.pad_id).int()
        eot = token_ids.shape[1] - 1 - not_pad.flip(-1).argmax(dim=-1)
    return eot + 1


def encode_text_from_embeddings(model: nn.Module, embeddings: torch.Tensor, token_ids: torch.Tensor) -> TextFeatures:
    """Text tower fed token *embeddings* (B, L, width) instead of ids (for learnable prompts).

    Adds the positional embedding, runs the transformer with the model's causal mask, applies ln_final,
    pools where open_clip pools (``text_global_pool`` with the model's ``text_pool_type``, positions found
    from ``token_ids``) and projects. Gradients flow to ``embeddings``. ``L`` may be shorter than the
    model's context length (the causal mask makes a prefix independent of what follows).
    """
    tower = _text_tower(model)
    cast_dtype = tower.transformer.get_cast_dtype()
    device = tower.positional_embedding.device
    if embeddings.dim() != 3 or token_ids.dim() != 2 or embeddings.shape[:2] != token_ids.shape:
        raise ValueError(
            f"embeddings (B, L, width) and token_ids (B, L) disagree: {tuple(embeddings.shape)} vs {tuple(token_ids.shape)}"
        )
    B, L, _ = embeddings.shape
    n_pos = tower.positional_embedding.shape[0]
    if L > n_pos:
        raise ValueError(f"sequence length {L} exceeds the model's context length {n_pos}")
    token_ids = token_ids.to(device)

    # CLIP.encode_text / TextTransformer._embeds after the embedding lookup
    x = embeddings.to(device=device, dtype=cast_dtype)
    x = x + tower.positional_embedding[:L].to(cast_dtype)
    attn_mask = tower.attn_mask
    if attn_mask is not None and attn_mask.shape[-1] != L:
        attn_mask = attn_mask[:L, :L]
    if tower.pad_mask_fn is not None:
        pad_mask = tower.pad_mask_fn(token_ids, L, x.dtype)
        attn_mask = pad_mask if attn_mask is None else attn_mask.unsqueeze(0) + pad_mask
    x = tower.transformer(x, attn_mask=attn_mask)
    x = tower.ln_final(x)

    if tower.pool_type == "none":
        raise NotImplementedError("text pool_type='none' has no single global text feature")
    # pool first, then project, exactly as open_clip does (projecting all tokens then indexing would differ
    # from encode_text by BLAS rounding)
    pooled = text_global_pool(x, token_ids, tower.pool_type, eos_token_id=tower.eos_id)
    return TextFeatures(
        global_=_project_text(tower, pooled),
        tokens=_project_text(tower, x),
        lengths=_text_lengths(tower, token_ids),
    )


def encode_text_features(model: nn.Module, token_ids: torch.Tensor) -> TextFeatures:
    """``encode_text`` that also returns every token's projected output and the valid lengths."""
    tower = _text_tower(model)
    token_ids = token_ids.to(tower.token_embedding.weight.device)
    return encode_text_from_embeddings(model, tower.token_embedding(token_ids), token_ids)


# --------------------------------------------------------------------------------------------------------
# learnable prompts
# --------------------------------------------------------------------------------------------------------


def _tokenize(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    ids = tokenizer(list(texts))
    if not isinstance(ids, torch.Tensor):
        ids = torch.as_tensor(ids)
    return ids.long()


def _content_span(tower: _TextTower, tokenizer, ids: torch.Tensor) -> tuple[int, int]:
    """(start, end) of the text's own tokens in one tokenized row, i.e. without SOT/EOT.

    The number of special tokens around the text is read off the tokenization of the empty string
    (2 for CLIP's SimpleTokenizer: SOT + EOT; 1 for EOS-only tokenizers), so no token ids are hard-coded.
    """
    empty = _tokenize(tokenizer, [""])
    n_special = int(_text_lengths(tower, empty)[0])
    length = int(_text_lengths(tower, ids[None])[0])
    lead = 1 if n_special >= 2 else 0
    trail = 1 if n_special >= 1 else 0
    return lead, length - trail


class PromptTextEncoder(nn.Module):
    """Class prompts "X X ... X {classname}." with ``n_ctx`` placeholders replaced by learnable context.

    The prompt token ids and their frozen token embeddings are non-persistent buffers (derivable from the
    model and the class names, so the state_dict stays empty). The CLIP model is held by plain reference,
    not as a submodule: it is frozen and shared, so it must not appear in ``.parameters()``,
    ``state_dict()`` or be moved by ``.to()`` on this module.

    ``forward(ctx)`` with ``ctx`` (n_ctx, width) shared across classes or (C, n_ctx, width)
    class-specific returns (C, D) unnormalised text features; ``return_tokens=True`` returns
    :class:`TextFeatures`. The context is cast to the token-embedding dtype, so an fp32 ctx works with a
    half-precision model.
    """

    token_ids: torch.Tensor
    token_embeds: torch.Tensor

    def __init__(self, model: nn.Module, tokenizer, classnames: list[str], n_ctx: int, placeholder: str = "X"):
        super().__init__()
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        if not classnames:
            raise ValueError("classnames is empty")
        # object.__setattr__ bypasses nn.Module's submodule registration
        object.__setattr__(self, "clip_model", model)
        self.classnames = list(classnames)
        self.n_ctx = int(n_ctx)
        tower = _text_tower(model)
        self.width = tower.token_embedding.embedding_dim

        ph_ids = _tokenize(tokenizer, [placeholder])[0]
        start, end = _content_span(tower, tokenizer, ph_ids)
        if end - start != 1:
            raise ValueError(f"placeholder {placeholder!r} must be a single token, got {end - start}")
        ph_id = int(ph_ids[start])

        prompts = [" ".join([placeholder] * self.n_ctx) + " " + name + "." for name in self.classnames]
        token_ids = _tokenize(tokenizer, prompts)
        # the tokenizer silently truncates a prompt longer than the context (losing the class name and EOT)
        context = token_ids.shape[1]
        # the special tokens around a text (SOT + EOT for CLIP's tokenizer) are counted on the empty string
        n_special = int(_text_lengths(tower, _tokenize(tokenizer, [""]))[0])
        name_len = int(_text_lengths(tower, _tokenize(tokenizer, [name + "." for name in self.classnames])).max())
        name_len -= n_special
        if self.n_ctx + name_len + n_special > context:
            raise ValueError(
                f"n_ctx={self.n_ctx}: with the longest class name ({name_len} tokens) and the start / end tokens the "
                f"prompt needs {self.n_ctx + name_len + n_special} of the text tower's {context}; set the method's "
                f"n_ctx (tai_dpt.n_ctx, t2i_pal.n_ctx, datafree.n_*, image_supervised.<method>.n_ctx) to at most "
                f"{context - name_len - n_special}")
        if tower.attn_mask is not None and tower.pool_type in ("argmax", "eos"):
            # A causal tower pooled at the EOT: nothing after the longest prompt's EOT reaches any output, so the
            # padding is cut off (the text tower is most of a prompt method's step: 20 of 32 tokens on tinyworld,
            # about 20 of 77 on real CLIP)
            token_ids = token_ids[:, :int(_text_lengths(tower, token_ids).max())]
        ctx_start = _content_span(tower, tokenizer, token_ids[0])[0]
        window = token_ids[:, ctx_start:ctx_start + self.n_ctx]
        if window.shape[1] != self.n_ctx or not bool((window == ph_id).all()):
            raise ValueError("could not locate the placeholder tokens in every prompt (context length too short?)")
        self.ctx_start = ctx_start

        device = tower.token_embedding.weight.device
        token_ids = token_ids.to(device)
        with torch.no_grad():
            token_embeds = tower.token_embedding(token_ids)
        self.register_buffer("token_ids", token_ids, persistent=False)
        self.register_buffer("token_embeds", token_embeds, persistent=False)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def prompt_embeddings(self, ctx: torch.Tensor) -> torch.Tensor:
        """(C, L, width) prompt token embeddings with ``ctx`` substituted for the placeholders."""
        emb = self.token_embeds
        C = emb.shape[0]
        ctx = ctx.to(device=emb.device, dtype=emb.dtype)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(C, -1, -1)
        elif ctx.dim() != 3 or ctx.shape[0] != C:
            raise ValueError(f"ctx must be (n_ctx, width) or ({C}, n_ctx, width), got {tuple(ctx.shape)}")
        if ctx.shape[1:] != (self.n_ctx, self.width):
            raise ValueError(f"ctx must end in ({self.n_ctx}, {self.width}), got {tuple(ctx.shape)}")
        s, e = self.ctx_start, self.ctx_start + self.n_ctx
        return torch.cat([emb[:, :s], ctx, emb[:, e:]], dim=1)

    def forward(self, ctx: torch.Tensor, return_tokens: bool = False):
        feats = encode_text_from_embeddings(self.clip_model, self.prompt_embeddings(ctx), self.token_ids)
        return feats if return_tokens else feats.global_

    @staticmethod
    def context_from_text(model: nn.Module, tokenizer, text: str) -> torch.Tensor:
        """(n_tokens, width) token embeddings of ``text`` (e.g. "a photo of a") without SOT/EOT, to
        initialise the context vectors; a detached copy, safe to wrap in ``nn.Parameter``."""
        tower = _text_tower(model)
        ids = _tokenize(tokenizer, [text])[0]
        start, end = _content_span(tower, tokenizer, ids)
        if end <= start:
            raise ValueError(f"{text!r} tokenizes to no tokens")
        ids = ids[start:end].to(tower.token_embedding.weight.device)
        with torch.no_grad():
            return tower.token_embedding(ids).detach().clone()
