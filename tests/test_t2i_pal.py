"""T2I-PAL: forward shapes, the adapter's equations against a loop reference, the shared prototypes, the
two-source training loop, and a tiny training run that saves, loads and scores."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mlr_core.cache import write_feature_cache, write_text_feature_cache
from mlr_core.data.manifest import read_manifest
from mlr_core.losses import ranking_loss
from mlr_core.methods.t2i_pal import (PalConfig, T2IPal, adapted_global_logits, adapted_local_logits, affinity,
                                      train_t2i_pal)
from mlr_core.scores import local_logits
from mlr_core.train import OptimConfig, fit

CLASSES = ["circle", "square", "star", "heart"]


def random_labels(rng, n):
    y = np.zeros((n, 4), np.int8)
    for row in y:
        row[rng.choice(4, size=int(rng.integers(1, 3)), replace=False)] = 1
    return y


@pytest.fixture(scope="module")
def caches(clip, tmp_path_factory):
    d = tmp_path_factory.mktemp("pal")
    rng = np.random.default_rng(0)
    y = random_labels(rng, 64)
    texts = ["a photo of " + " and ".join(f"a {CLASSES[c]}" for c in np.flatnonzero(row)) + "." for row in y]
    captions = write_text_feature_cache(texts, [f"cap{i}" for i in range(64)], y, CLASSES, clip, d / "captions.parquet",
                                        batch_size=32, shard_size=64)
    yi = random_labels(rng, 12)
    (d / "img").mkdir()
    lines = ["image,split,labels"]
    for i, row in enumerate(yi):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / "img" / f"{i}.png")
        lines.append(f"img/{i}.png,trainval,{';'.join(CLASSES[c] for c in np.flatnonzero(row))}")
    (d / "manifest.csv").write_text("\n".join(lines) + "\n")
    (d / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    images = write_feature_cache(read_manifest(d / "manifest.csv", d / "classes.txt"), clip, d / "synthetic.parquet",
                                 batch_size=12, shard_size=12)
    return captions, images


def test_forward_shapes_and_the_shared_prototypes(clip):
    cfg = PalConfig(n_ctx=4, class_specific=True)
    model = T2IPal(clip, CLASSES, cfg, seed=0)
    width = model.encoder.token_embeds.shape[-1]
    assert model.ctx_global.shape == model.ctx_local.shape == (4, 4, width)
    assert abs(model.ctx_global.std().item() - 0.02) < 0.005  # N(0, 0.02) init
    t_global, t_local = model.class_features()
    dim = t_global.shape[1]
    assert t_local.shape == (4, dim) and model.prototypes.shape == (4, dim)
    names = {n for n, _ in model.named_parameters()}
    assert names == {"ctx_global", "ctx_local", "prototypes"}  # the CLIP stays frozen and outside
    g = torch.Generator().manual_seed(1)
    image = {"global": torch.randn(5, dim, generator=g), "local": torch.randn(5, 16, dim, generator=g),
             "labels": torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])}
    mask = torch.arange(7)[None] < torch.tensor([7, 3, 5])[:, None]
    text = {"global": torch.randn(3, dim, generator=g), "local": torch.randn(3, 7, dim, generator=g), "mask": mask,
            "labels": torch.tensor([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]])}
    assert adapted_local_logits(image["local"], None, t_local, model.prototypes, cfg).shape == (5, 4)
    assert adapted_local_logits(text["local"], mask, t_local, model.prototypes, cfg).shape == (3, 4)
    # the loss: ranking loss of the global logits + of the adapted local logits
    loss = model.branch_loss(text, (t_global, t_local), margin=1.0)
    expect = (ranking_loss(adapted_global_logits(text["global"], t_global, None, cfg), text["labels"])
              + ranking_loss(adapted_local_logits(text["local"], mask, t_local, model.prototypes, cfg), text["labels"]))
    assert loss.shape == () and torch.allclose(loss, expect)
    # A is shared: the text branch and the image branch each move the same prototypes
    for batch in (text, image):
        model.zero_grad()
        model.branch_loss(batch, model.class_features(), margin=1.0).backward()
        assert model.prototypes.grad.abs().sum() > 0 and model.ctx_local.grad.abs().sum() > 0


def test_adapter_equations_match_a_loop_reference():
    g = torch.Generator().manual_seed(0)
    n, c, j, d = 2, 3, 5, 6
    local, text, protos = torch.randn(n, j, d, generator=g), torch.randn(c, d, generator=g), torch.randn(c, d, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    cfg = PalConfig(alpha=0.7, beta=3.5, tau=0.1, scale=4.0)
    got = adapted_local_logits(local, mask, text, protos, cfg)
    ref = torch.zeros(n, c)
    for a in range(n):
        f = [F.normalize(local[a, k], dim=0) for k in range(j) if mask[a, k]]
        for i in range(c):
            t = F.normalize(text[i], dim=0)
            s = torch.stack([fk @ t for fk in f])  # S_ij
            h = torch.exp(s / cfg.tau) / torch.exp(s / cfg.tau).sum()  # Eq. 4
            s_prime = (h * s).sum()  # Eq. 3 (cosines, unscaled)
            big_h = sum(hk * fk for hk, fk in zip(h, f))  # H_i
            q = torch.exp(-cfg.beta * (1 - F.normalize(big_h, dim=0) @ F.normalize(protos[i], dim=0)))  # Eq. 5
            ref[a, i] = cfg.scale * (cfg.alpha * q + s_prime)  # Eq. 6, then the one logit scale
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # without an adapter the local logit is TaI-DPT's
    none = PalConfig(adapter="none", tau=0.1)
    torch.testing.assert_close(adapted_local_logits(local, mask, text, None, none),
                               local_logits(local, text, 4.0, 10.0, mask))
    q = affinity(torch.randn(4, d, generator=g), protos, beta=3.5)
    assert q.shape == (4, c) and bool(((q > 0) & (q <= 1)).all())


def test_fit_cycles_a_second_source_beside_the_first():
    seen = []
    w = torch.nn.Parameter(torch.zeros(1))
    module = torch.nn.Module()
    module.w = w

    def loss_fn(batch):
        seen.append(batch["aux"]["i"].tolist())
        return (w * batch["x"].sum() + w * batch["aux"]["i"].float().sum()) ** 2

    fit(module, {"x": torch.arange(10.0)}, loss_fn,
        OptimConfig("sgd", lr=2e-3, weight_decay=5e-4, batch_size=4, steps=9, warmup_steps=0, eval_every=3), seed=0,
        desc="t", aux={"i": torch.arange(5)})
    assert len(seen) == 9 and all(len(b) in (4, 1) for b in seen)
    flat = [i for b in seen for i in b]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))  # each cycle covers it once


@pytest.mark.parametrize("train_on,adapter", [("both", "local"), ("captions", "none"), ("images", "global")])
def test_tiny_training_run_saves_loads_and_scores(clip, caches, tmp_path, train_on, adapter):
    captions, images = caches
    cfg = PalConfig(n_ctx=4, adapter=adapter)
    optim = OptimConfig(optimizer="sgd", lr=0.05, weight_decay=5e-4, batch_size=8, steps=40, warmup_steps=0,
                        eval_every=8)
    kw = {"cfg": cfg, "train_on": train_on, "gamma": 0.2, "margin": 1.0, "optim": optim, "seed": 3,
          "heldout_fraction": 0.25, "local_weight": 0.5}
    result = train_t2i_pal(clip, captions, images, tmp_path / "p.safetensors", **kw)
    log = result.log
    assert len(log) == 5 and log[-1]["train_loss"] < log[0]["train_loss"]
    signal = "heldout_text_mAP" if train_on == "captions" else "heldout_image_mAP"
    assert result.signal == signal and result.selected_value == max(e[signal] for e in log)
    model, meta = T2IPal.load(tmp_path / "p.safetensors", clip)
    assert model.classnames == CLASSES and meta["train_on"] == train_on and meta["seed"] == 3
    assert meta["training"]["selected_step"] == result.selected_step and meta["training"]["steps"] == 40
    assert (model.prototypes is None) == (adapter == "none")
    train_t2i_pal(clip, captions, images, tmp_path / "q.safetensors", **kw)
    again, _ = T2IPal.load(tmp_path / "q.safetensors", clip)
    assert torch.equal(again.ctx_local, model.ctx_local)  # the seed fixes the run
    scorer = model.scorer(local_weight=0.5, probability_scale=100.0)
    g = torch.Generator().manual_seed(0)
    dim = model.class_features()[0].shape[1]
    x_global, x_local = torch.randn(6, dim, generator=g), torch.randn(6, 16, dim, generator=g)
    scores, probs = scorer(x_global, x_local)
    with torch.no_grad():
        t_global, t_local = model.class_features()
        expect = 0.5 * adapted_global_logits(x_global, t_global, model.prototypes, cfg) + \
            0.5 * adapted_local_logits(x_local, None, t_local, model.prototypes, cfg)
    assert scores.shape == probs.shape == (6, 4) and scorer.needs_dense
    torch.testing.assert_close(scores, expect, atol=1e-5, rtol=1e-5)


def test_an_image_fraction_trains_on_a_seeded_part_of_the_synthetic_images(clip, caches, tmp_path):
    captions, images = caches
    optim = OptimConfig(optimizer="sgd", lr=0.05, weight_decay=5e-4, batch_size=8, steps=8, warmup_steps=0,
                        eval_every=8)
    kw = {"cfg": PalConfig(n_ctx=4), "train_on": "both", "gamma": 0.2, "margin": 1.0, "optim": optim, "seed": 3,
          "heldout_fraction": 0.25, "local_weight": 0.5}
    full = train_t2i_pal(clip, captions, images, tmp_path / "all.safetensors", **kw)
    half = train_t2i_pal(clip, captions, images, tmp_path / "half.safetensors", image_fraction=0.5, **kw)
    n_all = T2IPal.load(tmp_path / "all.safetensors", clip)[1]["n_images"]
    assert T2IPal.load(tmp_path / "half.safetensors", clip)[1]["n_images"] == round(n_all / 2) and n_all > 1
    assert half.steps_run == full.steps_run == 8  # the same budget; validated on the same held-out images
