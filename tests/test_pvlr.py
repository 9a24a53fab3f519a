"""PVLR: forward shapes on random RN101-size features, KCR loss, alpha re-weighting, unknown labels, EMA,
save/load."""
import math

import pytest
import torch

from mlr_core.losses import kcr_loss
from mlr_core.methods.pvlr import PVLR, Ema, PVLRHead, PvlrConfig


def test_head_shapes_rn101_size():
    g = torch.Generator().manual_seed(0)
    C, D = 20, 512
    head = PVLRHead(torch.randn(C, D, generator=g), heads=8)
    dense = torch.randn(2, 14 * 14, D, generator=g)  # RN101 at 448: 14x14 map, embed 512
    logits, kcr = head(dense, torch.randn(C, D, generator=g))
    assert logits.shape == (2, C) and kcr.shape == () and 0 <= kcr.item() <= 2
    assert 0 < head.alpha.item() < 1


def test_logits_depend_on_the_image_and_on_alpha():
    torch.manual_seed(0)
    C, D = 6, 32
    head = PVLRHead(torch.randn(C, D), heads=2).eval()
    dense, t_soft = torch.randn(3, 9, D), torch.randn(C, D)
    a, _ = head(dense, t_soft)
    b, _ = head(dense.flip(0), t_soft)
    assert torch.allclose(a.flip(0), b, atol=1e-5)  # per-image: no mixing across the batch
    with torch.no_grad():
        head.alpha_logit.fill_(3.0)
    c, _ = head(dense, t_soft)
    assert not torch.allclose(a, c)  # the alpha re-weighting of the two attention maps is in the path


def test_kcr_loss_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    expected = ((1 - 1 / math.sqrt(2)) + (1 - (-1))) / 2
    assert kcr_loss(a, b).item() == pytest.approx(expected, rel=1e-6)
    assert kcr_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)


def test_model_forward_loss_and_unknown_labels(clip):
    classes = ["circle", "square", "star", "heart"]
    model = PVLR(clip, classes, PvlrConfig(n_ctx=4, num_heads=4), seed=0)
    dense = torch.randn(3, 16, 128, generator=torch.Generator().manual_seed(1))
    logits, kcr = model(dense)
    assert logits.shape == (3, 4)
    labels = torch.tensor([[1, 0, -1, 0], [0, 1, -1, 1], [1, 0, -1, 0]])
    base = dict(gamma_pos=0.0, gamma_neg=2.0, clip=0.05, kcr_weight=0.0)
    loss = model.loss({"dense": dense, "labels": labels}, **base)
    loss.backward()
    assert model.ctx.grad is not None and model.ctx.grad.abs().max() > 0  # the soft prompt learns
    # a column of unknown labels adds nothing to the classification loss
    all_unknown = torch.full_like(labels, -1)
    assert model.loss({"dense": dense, "labels": all_unknown}, **base).item() == 0.0
    with_kcr = model.loss({"dense": dense, "labels": all_unknown}, **{**base, "kcr_weight": 4.0})
    assert with_kcr.item() == pytest.approx(4.0 * model(dense)[1].item(), rel=1e-5)


def test_ema_and_save_load(clip, tmp_path):
    model = PVLR(clip, ["circle", "square"], PvlrConfig(n_ctx=2, num_heads=2), seed=0)
    ema = Ema(model, decay=0.9997)
    assert ema.shadow.encoder.clip_model is model.encoder.clip_model  # the frozen CLIP is shared, not copied
    before = ema.shadow.ctx.detach().clone()
    with torch.no_grad():
        model.ctx.add_(1.0)
    ema.update(model)  # warm-up decay min(0.9997, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.shadow.ctx, d * before + (1 - d) * model.ctx.detach(), atol=1e-6)
    model.save(tmp_path / "p.safetensors")
    back = PVLR.load(tmp_path / "p.safetensors", clip)
    dense = torch.randn(2, 16, 128)
    assert torch.allclose(model.eval().scorer()(None, dense)[0], back.scorer()(None, dense)[0], atol=1e-6)


def test_forward_images_fine_tunes_the_image_tower(clip):
    model = PVLR(clip, ["circle", "square"], PvlrConfig(n_ctx=2, num_heads=2), seed=0)
    visual = clip.model.visual
    try:
        visual.requires_grad_(True)
        images = torch.randn(2, 3, clip.image_size, clip.image_size)
        logits, _ = model.forward_images(images, clip.model)
        assert logits.shape == (2, 2)
        logits.sum().backward()
        assert any(p.grad is not None and p.grad.abs().max() > 0 for p in visual.parameters())
    finally:
        visual.requires_grad_(False)
        visual.zero_grad(set_to_none=True)
