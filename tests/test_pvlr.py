"""PVLR: forward shapes on random RN101-size features, KCR loss, alpha re-weighting, unknown labels, EMA,
save/load."""
import math
import unittest.mock as mock

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


def test_an_ft_model_trains_its_own_copy_of_the_image_tower_at_its_own_lr(clip, tmp_path):
    from mlr_core.train import OptimConfig, fit

    cfg = PvlrConfig(n_ctx=2, num_heads=2, finetune=True)
    model = PVLR(clip, ["circle", "square"], cfg, seed=0)
    frozen = {k: v.clone() for k, v in clip.model.visual.state_dict().items()}
    model.train()
    bn = [m for m in model.visual.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and not any(m.training for m in bn) and model.head.training  # pretraining's BN statistics kept
    g = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, clip.image_size, clip.image_size, generator=g)
    labels = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]])
    cfg_opt = OptimConfig("adamw", 1e-3, 0.0, batch_size=3, steps=3, warmup_steps=0, eval_every=3)
    start = {k: v.clone() for k, v in model.visual.state_dict().items()}
    fit(model, {"images": images.half(), "labels": labels},
        lambda b: model.loss(b, gamma_pos=0.0, gamma_neg=2.0, clip=0.05, kcr_weight=4.0), cfg_opt, seed=0,
        desc="ft", lr_scales={"visual.": 0.1})
    moved = [k for k, v in model.visual.state_dict().items() if not torch.equal(v, start[k])]
    assert moved and all(torch.equal(v, frozen[k]) for k, v in clip.model.visual.state_dict().items())
    assert not any(p.requires_grad for p in clip.model.visual.parameters())  # the shared CLIP stays frozen
    # the saved artifact carries the fine-tuned tower; the loaded model scores pixels, not cached features
    model.save(tmp_path / "ft.safetensors")
    back = PVLR.load(tmp_path / "ft.safetensors", clip)
    a, b = model.eval().scorer().score_images(images), back.scorer().score_images(images)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(b[1], torch.sigmoid(b[0]))
    with pytest.raises(ValueError, match="scores images"):
        back.scorer()(None, torch.randn(2, 16, 128))


def test_lr_scales_give_a_parameter_group_its_own_lr_under_the_same_schedule():
    from mlr_core.train import OptimConfig, fit

    module = torch.nn.ModuleDict({"visual": torch.nn.Linear(2, 1), "head": torch.nn.Linear(2, 1)})
    seen = []  # the lr of each group at each optimiser step
    opt_cfg = OptimConfig("sgd", 0.5, 0.0, batch_size=2, steps=4, warmup_steps=2, eval_every=4)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))

    def loss(b):
        return (module["visual"](b["x"]) + module["head"](b["x"])).pow(2).mean()

    with mock.patch("torch.optim.SGD.step", autospec=True, side_effect=lambda opt: seen.append(
            sorted((round(g["lr"], 6), g["lr_scale"]) for g in opt.param_groups))):
        fit(module, {"x": x}, loss, opt_cfg, seed=0, desc="groups", lr_scales={"visual.": 0.01})
    # warm-up 0.25, 0.5 of lr 0.5 for both groups, the visual one x 0.01
    assert seen[0] == [(0.0025, 0.01), (0.25, 1.0)] and seen[1] == [(0.005, 0.01), (0.5, 1.0)]
