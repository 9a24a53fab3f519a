"""Feature extraction (mlr_core.models.features) against open_clip's own forward passes.

Random-weight RN50 / ViT-B-32 plus tiny inline ResNet / ViT CLIPs; every reference value is computed from
open_clip (encode_image / encode_text / forward_intermediates) or from hooks on the model, never from the
code under test.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import open_clip  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP  # noqa: E402
from open_clip.tokenizer import SimpleTokenizer  # noqa: E402

from mlr_core.models.features import (  # noqa: E402
    ImageFeatures,
    PromptTextEncoder,
    TextFeatures,
    encode_image_features,
    encode_text_features,
    encode_text_from_embeddings,
)


CLASSNAMES = ["dog", "hot dog", "traffic light", "person"]
TINY_TEXT = dict(context_length=32, vocab_size=49408, width=64, heads=4, layers=2)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """allclose with atol relative to the reference's scale (random-weight features range from 1e-2 to 1e1)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    atol = rel * max(1.0, expected.abs().max().item()) if expected.numel() else rel
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert torch.allclose(actual, expected, rtol=0, atol=atol), f"max abs err {err:.3g} > {atol:.3g}"


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    # intra-op threads spin at barriers: with any other process busy on one of the 2 cores, 2 threads run
    # these small ops ~100x slower than 1 thread, while the gain without contention is well under 2x
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _randomize_batchnorm(model: torch.nn.Module) -> None:
    # fresh ResNets zero-init bn3 and have identity running stats, which would hide ordering bugs in the trunk
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
            m.running_mean = 0.1 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)


def _freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def _tiny_rn(**vision_kw) -> CLIP:
    torch.manual_seed(0)
    cfg = CLIPVisionCfg(layers=[1, 1, 1, 1], width=16, image_size=128, head_width=16, **vision_kw)
    model = CLIP(embed_dim=64, vision_cfg=cfg, text_cfg=CLIPTextCfg(**TINY_TEXT))
    _randomize_batchnorm(model)
    return _freeze(model)


def _tiny_vit(cls=CLIP, **vision_kw) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=16, image_size=64, **vision_kw)
    return _freeze(cls(embed_dim=64, vision_cfg=cfg, text_cfg=CLIPTextCfg(**TINY_TEXT)))


def _named(name: str):
    torch.manual_seed(0)
    return _freeze(open_clip.create_model(name, pretrained=None)), open_clip.get_tokenizer(name)


@pytest.fixture(scope="module")
def models():
    """name -> (model, tokenizer, native image size); each built once for the whole module."""
    tiny_tok = SimpleTokenizer(context_length=TINY_TEXT["context_length"])
    rn50, rn50_tok = _named("RN50")
    vit, vit_tok = _named("ViT-B-32")
    return {
        "RN50": (rn50, rn50_tok, 224),
        "ViT-B-32": (vit, vit_tok, 224),
        "tiny-rn": (_tiny_rn(), tiny_tok, 128),
        "tiny-vit": (_tiny_vit(), tiny_tok, 64),
        "tiny-vit-avg": (_tiny_vit(pool_type="avg"), tiny_tok, 64),
        "tiny-vit-lnafter": (_tiny_vit(final_ln_after_pool=True), tiny_tok, 64),
        "tiny-vit-avg-lnafter": (_tiny_vit(pool_type="avg", final_ln_after_pool=True), tiny_tok, 64),
        "tiny-custom-text": (_tiny_vit(cls=CustomTextCLIP), tiny_tok, 64),
    }


def _images(size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g)


class _Recorder:
    """Forward hooks that count calls and keep the last output."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.calls = {k: 0 for k in modules}
        self.out: dict[str, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook(k)) for k, m in modules.items()]

    def _hook(self, key):
        def hook(_module, _inputs, output):
            self.calls[key] += 1
            self.out[key] = output.detach().clone()

        return hook

    def remove(self):
        for h in self._handles:
            h.remove()


def _watched(model) -> dict[str, torch.nn.Module]:
    v = model.visual
    trunk_end = v.layer4 if hasattr(v, "layer4") else v.transformer
    return {"visual": v, "conv1": v.conv1, "trunk_end": trunk_end}


_RUNS: dict = {}


@pytest.fixture(scope="module")
def image_runs(models):
    """One recorded extractor call per (model, size), shared by the tests that inspect it."""

    def run(name: str, size: int):
        key = (name, size)
        if key not in _RUNS:
            model = models[name][0]
            rec = _Recorder(_watched(model))
            try:
                with torch.no_grad():
                    feats = encode_image_features(model, _images(size))
            finally:
                rec.remove()
            _RUNS[key] = (feats, rec)
        return _RUNS[key]

    yield run
    _RUNS.clear()


NATIVE = ["RN50", "ViT-B-32", "tiny-rn", "tiny-vit", "tiny-vit-avg", "tiny-vit-lnafter", "tiny-vit-avg-lnafter",
          "tiny-custom-text"]
EXPECTED_GRID = {"RN50": (7, 7), "ViT-B-32": (7, 7), "tiny-rn": (4, 4)}


# ---------------------------------------------------------------------------------------------- image


@pytest.mark.parametrize("name", NATIVE)
def test_global_equals_encode_image_and_grid(models, image_runs, name):
    model, _, size = models[name]
    feats, _ = image_runs(name, size)
    with torch.no_grad():
        ref = model.encode_image(_images(size))
    assert isinstance(feats, ImageFeatures)
    assert_close(feats.global_, ref)
    H, W = feats.grid
    assert (H, W) == EXPECTED_GRID.get(name, (4, 4))
    assert feats.dense.shape == (2, H * W, ref.shape[-1])
    assert feats.dense.dtype == ref.dtype == torch.float32


@pytest.mark.parametrize("name", NATIVE)
def test_single_visual_forward(image_runs, models, name):
    _, rec = image_runs(name, models[name][2])
    # the trunk runs exactly once; the tower's own forward (which would redo it) is never invoked
    assert rec.calls["conv1"] == 1
    assert rec.calls["trunk_end"] == 1
    assert rec.calls["visual"] == 0


@pytest.mark.parametrize("name", ["RN50", "tiny-rn"])
def test_rn_dense_is_value_and_output_projection(models, image_runs, name):
    model, _, size = models[name]
    feats, rec = image_runs(name, size)
    pool = model.visual.attnpool
    fmap = rec.out["trunk_end"]  # (B, C, H, W) from the hook on layer4
    B, C, H, W = fmap.shape
    loc = fmap.flatten(2).transpose(1, 2) + pool.positional_embedding[1:]
    with torch.no_grad():
        ref = F.linear(F.linear(loc, pool.v_proj.weight, pool.v_proj.bias), pool.c_proj.weight, pool.c_proj.bias)
    assert_close(feats.dense, ref)
    # row-major over (H, W): location (h, w) is row h * W + w
    h, w = H - 1, 0
    assert_close(feats.dense[:, h * W + w], ref[:, h * W + w])


@pytest.mark.parametrize("size", [128, 192])
def test_rn_uniform_attention_global_is_mean_of_dense(size):
    """With q/k projections zeroed, the attention pool attends uniformly, so its output is the mean of
    c_proj(v_proj(token)) over [mean token; locations]: the dense map must average (with the mean token's
    term) to the pooled feature, at the native and at a resized positional embedding."""
    model = _tiny_rn()
    pool = model.visual.attnpool
    for lin in (pool.q_proj, pool.k_proj):
        lin.weight.data.zero_()
        lin.bias.data.zero_()
    rec = _Recorder({"trunk_end": model.visual.layer4})
    try:
        with torch.no_grad():
            feats = encode_image_features(model, _images(size, seed=3))
    finally:
        rec.remove()
    fmap = rec.out["trunk_end"]
    H, W = feats.grid
    assert (H, W) == (size // 32, size // 32)
    with torch.no_grad():
        mean_tok = pool.c_proj(pool.v_proj(fmap.mean(dim=(2, 3)) + pool.positional_embedding[0]))
        expected = (mean_tok + feats.dense.sum(dim=1)) / (H * W + 1)
        if size == 128:
            assert_close(feats.global_, model.encode_image(_images(size, seed=3)))
    assert_close(feats.global_, expected)


def _bicubic_grid(pos: torch.Tensor, old: int, new: int) -> torch.Tensor:
    grid = pos[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", antialias=True, align_corners=False)
    return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(new * new, -1)])


def test_rn50_at_448_gives_14x14_with_resized_pos_embed(models):
    model, _, _ = models["RN50"]
    pool = model.visual.attnpool
    images = _images(448)
    rec = _Recorder({"trunk_end": model.visual.layer4})
    try:
        with torch.no_grad():
            feats = encode_image_features(model, images)
    finally:
        rec.remove()
    assert feats.grid == (14, 14)
    assert feats.dense.shape == (2, 196, 1024)
    pos = _bicubic_grid(pool.positional_embedding.detach(), 7, 14)
    with torch.no_grad():
        ref_dense = pool.c_proj(pool.v_proj(rec.out["trunk_end"].flatten(2).transpose(1, 2) + pos[1:]))
    assert_close(feats.dense, ref_dense)
    # reference global: open_clip's own forward after re-gridding the pool's embedding the way a checkpoint
    # would be re-gridded (the shared model is restored afterwards)
    original = pool.positional_embedding
    pool.positional_embedding = torch.nn.Parameter(pos, requires_grad=False)
    try:
        with torch.no_grad():
            ref = model.encode_image(images)
    finally:
        pool.positional_embedding = original
    assert_close(feats.global_, ref)


def test_rn_other_resolution_matches_regridded_model():
    model = _tiny_rn()
    pool = model.visual.attnpool
    images = _images(256)
    with torch.no_grad():
        feats = encode_image_features(model, images)
    assert feats.grid == (8, 8)
    # reference: open_clip's own forward after re-gridding the pool's embedding the way a checkpoint would be
    pool.positional_embedding = torch.nn.Parameter(_bicubic_grid(pool.positional_embedding.detach(), 4, 8))
    with torch.no_grad():
        ref = model.encode_image(images)
    assert_close(feats.global_, ref)


@pytest.mark.parametrize("name", ["ViT-B-32", "tiny-vit", "tiny-vit-avg", "tiny-vit-lnafter", "tiny-vit-avg-lnafter"])
def test_vit_dense_is_ln_post_then_proj_of_patch_tokens(models, image_runs, name):
    model, _, size = models[name]
    feats, _ = image_runs(name, size)
    with torch.no_grad():
        out = model.visual.forward_intermediates(
            _images(size), indices=1, normalize_intermediates=True, intermediates_only=True, output_fmt="NLC"
        )
    ref = out["image_intermediates"][-1] @ model.visual.proj  # ln_post(patch tokens) @ proj
    assert_close(feats.dense, ref)


@pytest.mark.parametrize("name", ["tiny-vit-avg"])
def test_vit_avg_pool_global_is_mean_of_dense(models, image_runs, name):
    model, _, size = models[name]
    feats, _ = image_runs(name, size)
    assert_close(feats.global_, feats.dense.mean(dim=1))


def test_vit_other_resolution_interpolates_pos_embed():
    model = _tiny_vit()
    images = _images(96)
    with torch.no_grad():
        feats = encode_image_features(model, images)
    assert feats.grid == (6, 6)
    v = model.visual
    v.positional_embedding = torch.nn.Parameter(_bicubic_grid(v.positional_embedding.detach(), 4, 6))
    with torch.no_grad():
        ref = model.encode_image(images)
        out = v.forward_intermediates(
            images, indices=1, normalize_intermediates=True, intermediates_only=True, output_fmt="NLC"
        )
    assert_close(feats.global_, ref)
    assert_close(feats.dense, out["image_intermediates"][-1] @ v.proj)


def test_vit_b32_at_448_grid(models):
    model, _, _ = models["ViT-B-32"]
    with torch.no_grad():
        feats = encode_image_features(model, _images(448))
    assert feats.grid == (14, 14) and feats.dense.shape == (2, 196, 512)
    assert torch.isfinite(feats.dense).all() and torch.isfinite(feats.global_).all()


def test_unsupported_vit_variant_raises():
    model = _tiny_vit(attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=4)
    with pytest.raises(NotImplementedError, match="attentional pooler"):
        encode_image_features(model, _images(64))


@pytest.mark.parametrize("build", [_tiny_rn, _tiny_vit], ids=["rn", "vit"])
@pytest.mark.parametrize("mode", ["to_bf16", "convert_weights_to_lp"])
def test_dtype_is_kept_bf16(build, mode):
    model = build()
    if mode == "to_bf16":
        model = model.to(torch.bfloat16)
    else:  # open_clip's mixed casting: convs/linears/projections bf16, embeddings and norms stay fp32
        open_clip.model.convert_weights_to_lp(model, torch.bfloat16)
    size = model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0]
    images = _images(size)
    ids = SimpleTokenizer(context_length=32)(["a dog.", "hot dog!"])
    with torch.no_grad():
        feats = encode_image_features(model, images)  # fp32 images are cast to the tower's input dtype
        ref = model.encode_image(images.to(torch.bfloat16))
        text = encode_text_features(model, ids)
        text_ref = model.encode_text(ids)
    assert feats.global_.dtype == feats.dense.dtype == text.global_.dtype == text.tokens.dtype == torch.bfloat16
    assert_close(feats.global_.float(), ref.float())
    assert_close(text.global_.float(), text_ref.float())


def test_image_grad_flows_when_not_under_no_grad():
    model = _tiny_vit()
    images = _images(64).requires_grad_(True)
    feats = encode_image_features(model, images)
    (feats.global_.sum() + feats.dense.sum()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------- text


TEXTS = ["a photo of a dog.", "hot dog!"]


@pytest.mark.parametrize("name", ["RN50", "ViT-B-32", "tiny-rn", "tiny-custom-text"])
def test_text_features_match_encode_text(models, name):
    model, tokenizer, _ = models[name]
    ids = tokenizer(TEXTS)
    ln_final = model.text.ln_final if hasattr(model, "text") else model.ln_final
    proj = model.text.text_projection if hasattr(model, "text") else model.text_projection
    rec = _Recorder({"ln_final": ln_final})
    try:
        with torch.no_grad():
            feats = encode_text_features(model, ids)
            ref = model.encode_text(ids)
    finally:
        rec.remove()
    assert isinstance(feats, TextFeatures)
    assert_close(feats.global_, ref)
    # lengths: the text's own BPE tokens + SOT + EOT, independent of the code under test
    expected_len = torch.tensor([len(tokenizer.encode(t)) + 2 for t in TEXTS])
    assert torch.equal(feats.lengths.cpu(), expected_len)
    assert feats.tokens.shape == (len(TEXTS), ids.shape[1], ref.shape[-1])
    # every token's output is ln_final then text_projection (ln_final output recorded by the hook, which
    # fires for the extractor's call first and encode_text's second; both see the same input)
    assert_close(feats.tokens, rec.out["ln_final"] @ proj)
    # the pooled token is the last valid one
    last = feats.tokens[torch.arange(len(TEXTS)), feats.lengths - 1]
    assert_close(last, feats.global_)


def test_text_from_embeddings_gradients(models):
    model, tokenizer, _ = models["tiny-rn"]
    ids = tokenizer(TEXTS)
    emb = model.token_embedding(ids).detach().requires_grad_(True)
    feats = encode_text_from_embeddings(model, emb, ids)
    feats.global_.sum().backward()
    assert emb.grad is not None
    # causal mask + EOT pooling: positions after the EOT get no gradient, the ones before do
    lengths = feats.lengths
    for b in range(len(TEXTS)):
        assert emb.grad[b, : lengths[b]].abs().sum() > 0
        assert emb.grad[b, lengths[b]:].abs().sum() == 0


# ------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("name", ["RN50", "ViT-B-32", "tiny-rn", "tiny-custom-text"])
def test_prompt_encoder_reproduces_hand_written_prompts(models, name):
    model, tokenizer, _ = models[name]
    enc = PromptTextEncoder(model, tokenizer, CLASSNAMES, n_ctx=4)
    ctx = PromptTextEncoder.context_from_text(model, tokenizer, "a photo of a")
    width = ctx.shape[1]
    assert ctx.shape == (4, width)
    with torch.no_grad():
        ref = model.encode_text(tokenizer([f"a photo of a {c}." for c in CLASSNAMES]))
        full = enc(ctx, return_tokens=True)  # shared ctx; global_ is what enc(ctx) returns
        specific = enc(ctx.unsqueeze(0).repeat(len(CLASSNAMES), 1, 1))
    assert isinstance(full, TextFeatures)
    assert_close(full.global_, ref)
    assert_close(specific, ref)
    expected_len = torch.tensor([len(tokenizer.encode(f"a photo of a {c}.")) + 2 for c in CLASSNAMES])
    assert torch.equal(full.lengths.cpu(), expected_len)
    # the causal towers run only up to the longest prompt's EOT (the rest cannot reach any output)
    assert enc.token_ids.shape[1] == int(expected_len.max()) < tokenizer.context_length


def test_a_context_longer_than_the_text_tower_names_the_bound(models):
    model, tokenizer, _ = models["tiny-rn"]  # a 32-token text context
    PromptTextEncoder(model, tokenizer, CLASSNAMES, n_ctx=20)
    with pytest.raises(ValueError, match=r"n_ctx=40: .* needs \d+ of the text tower's 32; set the method's n_ctx "
                                         r"\(tai_dpt.n_ctx.*to at most \d+"):
        PromptTextEncoder(model, tokenizer, CLASSNAMES, n_ctx=40)


def test_prompt_encoder_gradients_and_no_clip_parameters(models):
    model, tokenizer, _ = models["tiny-rn"]
    enc = PromptTextEncoder(model, tokenizer, CLASSNAMES, n_ctx=4)
    assert list(enc.parameters()) == []
    assert list(enc.state_dict().keys()) == []
    assert [n for n, _ in enc.named_modules()] == [""]

    init = PromptTextEncoder.context_from_text(model, tokenizer, "a photo of a")
    shared = torch.nn.Parameter(init.clone())
    enc(shared).pow(2).sum().backward()
    assert shared.grad is not None and shared.grad.shape == shared.shape and shared.grad.abs().sum() > 0

    specific = torch.nn.Parameter(init.unsqueeze(0).repeat(len(CLASSNAMES), 1, 1))
    out = enc(specific)
    out[1].sum().backward()  # only class 1 ("hot dog") is in the loss
    assert specific.grad[1].abs().sum() > 0
    assert specific.grad[[0, 2, 3]].abs().sum() == 0
    # the frozen model got no gradients
    assert all(p.grad is None for p in model.parameters())


def test_prompt_encoder_rejects_bad_ctx(models):
    model, tokenizer, _ = models["tiny-rn"]
    enc = PromptTextEncoder(model, tokenizer, CLASSNAMES, n_ctx=2)
    with pytest.raises(ValueError):
        enc(torch.zeros(3, 64))
    with pytest.raises(ValueError):
        enc(torch.zeros(len(CLASSNAMES) + 1, 2, 64))
