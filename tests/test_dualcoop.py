"""DualCoOp: region aggregation against a hand loop, ASL against a hand-computed case, unknown labels never
contribute, a short training run on the tiny CLIP learns, zero-shot metrics."""
import math

import numpy as np
import pytest
import torch

from mlr_core.losses import asymmetric_loss
from mlr_core.methods.dualcoop import DualCoOp, DualCoOpConfig, dual_probabilities, dual_region_logits
from mlr_core.metrics import multilabel_metrics, zero_shot_metrics


def test_aggregation_matches_hand_loop_and_shapes():
    g = torch.Generator().manual_seed(0)
    B, J, D, C = 3, 14 * 14, 512, 5  # RN101 at 448: a 14x14 map, embed 512
    dense, t_neg, t_pos = torch.randn(B, J, D, generator=g), torch.randn(C, D, generator=g), torch.randn(C, D, generator=g)
    z = dual_region_logits(dense, t_neg, t_pos, 20.0, 5.0)
    assert z.shape == (B, 2, C)
    for b in range(B):
        for c in range(C):
            cp = torch.nn.functional.cosine_similarity(dense[b], t_pos[c][None], dim=-1)
            cn = torch.nn.functional.cosine_similarity(dense[b], t_neg[c][None], dim=-1)
            w = torch.exp(20 * cp) / torch.exp(20 * cp).sum()  # weights from the positive scores only
            assert torch.allclose(z[b, 1, c], 5 * (w * 20 * cp).sum(), atol=1e-4)
            assert torch.allclose(z[b, 0, c], 5 * (w * 20 * cn).sum(), atol=1e-4)
    p = dual_probabilities(z)
    assert torch.allclose(p, torch.sigmoid(z[:, 1] - z[:, 0]), atol=1e-6)


def test_asymmetric_loss_hand_computed():
    p = torch.tensor([[0.9, 0.3, 0.02, 0.6]])
    y = torch.tensor([[1, 0, 0, -1]])
    # positive: -(1 - 0.9)^1 log 0.9; negative 0.3 -> p_m = 0.25: -(0.25^2) log(0.75); 0.02 -> p_m = 0: 0
    expected = -(0.1 * math.log(0.9)) - (0.25 ** 2 * math.log(0.75))
    assert asymmetric_loss(p, y, 1.0, 2.0, 0.05).item() == pytest.approx(expected, rel=1e-5)
    # gamma+ 0 (PVLR): plain log-likelihood of the positive
    assert asymmetric_loss(p, y, 0.0, 2.0, 0.05).item() == pytest.approx(-math.log(0.9) - 0.0625 * math.log(0.75), rel=1e-5)


def test_unknown_labels_never_contribute(clip):
    classes = ["circle", "square", "star"]
    model = DualCoOp(clip, classes, DualCoOpConfig(n_ctx=4, class_specific=True), seed=0)
    dense = torch.randn(4, 16, 128, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([[1, -1, 0], [0, -1, 1], [-1, -1, 1], [0, -1, 0]])
    loss = model.loss({"dense": dense, "labels": labels}, 1.0, 2.0, 0.05)
    loss.backward()
    # class 1 is unknown everywhere: its class-specific contexts get exactly zero gradient
    assert model.ctx_pos.grad[1].abs().max() == 0 and model.ctx_neg.grad[1].abs().max() == 0
    assert model.ctx_pos.grad[0].abs().max() > 0
    # changing the scores of unknown entries changes nothing
    p = torch.rand(4, 3, generator=torch.Generator().manual_seed(2))
    q = p.clone()
    q[labels == -1] = torch.rand(int((labels == -1).sum()))
    assert asymmetric_loss(p, labels).item() == pytest.approx(asymmetric_loss(q, labels).item(), abs=1e-7)


def test_save_load_round_trip(clip, tmp_path):
    classes = ["circle", "square", "star"]
    model = DualCoOp(clip, classes, DualCoOpConfig(n_ctx=4, class_specific=False), seed=3)
    model.save(tmp_path / "m.safetensors")
    back = DualCoOp.load(tmp_path / "m.safetensors", clip)
    dense = torch.randn(2, 16, 128)
    assert torch.allclose(model.scorer()(None, dense)[0], back.scorer()(None, dense)[0])
    # shared contexts score classes never trained on (zero-shot)
    other = DualCoOp.load(tmp_path / "m.safetensors", clip, classnames=["heart", "ring"])
    assert other.scorer()(None, dense)[0].shape == (2, 2)


def test_zero_shot_metrics_restrict_classes_and_images():
    rng = np.random.default_rng(0)
    scores, targets = rng.normal(size=(50, 6)), (rng.random((50, 6)) < 0.3).astype(np.int8)
    targets[:10, 4:] = 0  # ten images without unseen positives
    z = zero_shot_metrics(scores, targets, unseen=[4, 5], seen=[0, 1, 2], top_k=(3,))
    rows = (targets[:, 4:] == 1).any(1)
    ref = multilabel_metrics(scores[rows][:, 4:], targets[rows][:, 4:], top_k=(3,))
    assert z["ZSL"]["mAP"] == pytest.approx(ref["mAP"]) and z["ZSL"]["F1@3"] == pytest.approx(ref["F1@3"])
    assert z["ZSL"]["n_images"] == rows.sum() and z["ZSL"]["n_classes"] == 2
    ref = multilabel_metrics(scores[:, [0, 1, 2, 4, 5]], targets[:, [0, 1, 2, 4, 5]], top_k=(3,))
    assert z["GZSL"]["F1@3"] == pytest.approx(ref["F1@3"]) and z["GZSL"]["n_images"] == 50
    assert zero_shot_metrics(scores, targets, [4, 5], [0], zsl_images="all")["ZSL"]["n_images"] == 50
