"""Data-free hierarchical prompts: the token layout for a grouping, the order loss, training and round trip."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from mlr_core.cache import write_text_feature_cache
from mlr_core.losses import order_loss
from mlr_core.methods.datafree import (HierarchicalContext, HierarchicalPrompts, HierarchyConfig, group_index,
                                       train_datafree)
from mlr_core.text.mining import read_mined, write_mined
from mlr_core.train import OptimConfig

CLASSES = ["circle", "square", "star", "heart", "tree"]


def test_hierarchical_layout_for_a_grouping():
    # level 1: {circle, square, star}, {heart, tree}; level 2: {circle, square}, star and the rest alone
    groups = (group_index([["circle", "square", "star"], ["heart", "tree"]], CLASSES),
              group_index([["square", "circle"]], CLASSES))
    assert groups == ((0, 0, 0, 1, 1), (0, 0, -1, -1, -1))
    cfg = HierarchyConfig(n_shared=3, n_partial=(2, 1), n_specific=2, groups=groups)
    ctx = HierarchicalContext(5, 8, cfg, torch.Generator().manual_seed(0))()
    assert ctx.shape == (5, 8, 8) and cfg.n_ctx == 8
    shared, p1, p2, own = ctx[:, :3], ctx[:, 3:5], ctx[:, 5:6], ctx[:, 6:]
    assert all(torch.equal(shared[0], shared[c]) for c in range(5))
    assert torch.equal(p1[0], p1[1]) and torch.equal(p1[1], p1[2]) and torch.equal(p1[3], p1[4])
    assert not torch.equal(p1[2], p1[3])
    assert torch.equal(p2[0], p2[1])
    assert not torch.equal(p2[2], p2[3]) and not torch.equal(p2[1], p2[2])  # ungrouped: own tokens
    assert all(not torch.equal(own[a], own[b]) for a in range(5) for b in range(a + 1, 5))
    # gradients reach a group's tokens from every member
    ctx_mod = HierarchicalContext(5, 8, cfg, torch.Generator().manual_seed(0))
    ctx_mod()[1, 3].sum().backward()
    assert ctx_mod.partial[0].grad[0].abs().sum() > 0 and ctx_mod.partial[0].grad[1:].abs().sum() == 0


@pytest.mark.parametrize("layout,shape", [("shared", (8, 0, 0)), ("class_specific", (0, 0, 8))])
def test_ablation_layouts_keep_the_token_count(layout, shape):
    cfg = HierarchyConfig(layout=layout, n_shared=3, n_partial=(2, 1), n_specific=2)
    n_shared, n_partial, n_specific = cfg.counts()
    assert (n_shared, sum(n_partial), n_specific) == shape
    ctx = HierarchicalContext(5, 4, cfg, torch.Generator().manual_seed(0))()
    assert ctx.shape == (5, 8, 4)
    same = torch.equal(ctx[0], ctx[1])
    assert same == (layout == "shared")


def test_group_members_must_be_classes():
    with pytest.raises(ValueError, match="'moon' is not a class"):
        group_index([["circle", "moon"]], CLASSES)


def test_order_loss_is_zero_at_the_anchor_and_pulls_towards_it():
    torch.manual_seed(0)
    anchor = torch.randn(6, 16)
    assert order_loss(anchor * 3.0, anchor, 0.1).abs() < 1e-6  # only directions matter
    learned = torch.randn(6, 16, requires_grad=True)
    loss = order_loss(learned, anchor, 0.1)
    assert loss > 0
    loss.backward()
    with torch.no_grad():
        stepped = learned - 0.05 * learned.grad
    assert order_loss(stepped, anchor, 0.1) < loss
    # KL(P || Q) by hand for one 3-class case
    a, x = torch.randn(3, 4), torch.randn(3, 4)

    def dist(v):
        v = torch.nn.functional.normalize(v, dim=-1)
        s = (v @ v.T / 0.5).masked_fill(torch.eye(3, dtype=torch.bool), float("-inf"))
        return torch.softmax(s, -1)

    p, q = dist(a), dist(x)
    by_hand = sum(p[i, j] * torch.log(p[i, j] / q[i, j]) for i in range(3) for j in range(3) if i != j) / 3
    torch.testing.assert_close(order_loss(x, a, 0.5), by_hand)


@pytest.fixture(scope="module")
def llm_outputs(clip, tmp_path_factory):
    """An LLM-stage-shaped sentences file + subgroups JSON, and the sentences' text feature cache."""
    d = tmp_path_factory.mktemp("llm")
    rng = np.random.default_rng(0)
    texts, labels, kinds = [], [], []
    for i in range(120):
        chosen = rng.choice(5, size=int(rng.integers(1, 3)), replace=False)
        texts.append(f"sentence {i}: " + " near ".join(f"a {CLASSES[c]}" for c in chosen) + ".")
        y = np.zeros(5, np.int8)
        y[chosen] = 1
        labels.append(y)
        kinds.append("relationship" if len(chosen) == 2 else ("attribute", "fine_attribute")[i % 2])
    rows = pd.DataFrame({"caption": texts, "source": "llm:test", "image_id": None, "labels": labels, "kind": kinds})
    write_mined(rows, CLASSES, {}, d / "sentences.parquet", d / "summary.json")
    (d / "subgroups.json").write_text(json.dumps({"coarse": [{"name": "a", "classes": ["circle", "square", "star"]}],
                                                  "fine": [{"name": "b", "classes": ["circle", "square"]}]}))
    texts, ids, y, classes = read_mined(d / "sentences.parquet")
    write_text_feature_cache(texts, ids, y, classes, clip, d / "features.parquet", batch_size=64, shard_size=128)
    return d


def _train(clip, d, out, **kw):
    args = dict(cfg=HierarchyConfig(n_shared=2, n_partial=(2, 1), n_specific=1),
                kinds=["attribute", "fine_attribute", "relationship"],
                optim=OptimConfig(optimizer="sgd", lr=0.05, weight_decay=5e-4, batch_size=32, steps=16, warmup_steps=0,
                                  eval_every=4, schedule="step", milestones=(0.5,)),
                margin=1.0, scale=4.0, text_temperature=50.0, order_weight=0.2, order_temperature=0.1,
                hand_template="a photo of a {}.", heldout_fraction=0.1, seed=0, hierarchy="llm", hierarchy_groups=(2, 3))
    args.update(kw)
    return train_datafree(clip, d / "features.parquet", d / "sentences.parquet", d / "subgroups.json", out, **args)


def test_training_lowers_the_loss_and_round_trips(clip, llm_outputs, tmp_path):
    log = _train(clip, llm_outputs, tmp_path / "p.safetensors").log
    assert log[-1]["train_loss"] < log[0]["train_loss"] and "heldout_text_mAP" in log[-1]
    prompts, meta = HierarchicalPrompts.load(tmp_path / "p.safetensors", clip)
    assert prompts.classnames == CLASSES and meta["method"] == "datafree" and meta["n_sentences"] == 120
    assert prompts.cfg.groups == ((0, 0, 0, -1, -1), (0, 0, -1, -1, -1))
    _train(clip, llm_outputs, tmp_path / "q.safetensors")
    again, _ = HierarchicalPrompts.load(tmp_path / "q.safetensors", clip)
    for (n1, a), (n2, b) in zip(prompts.named_parameters(), again.named_parameters()):
        assert n1 == n2 and torch.equal(a, b)
    scorer = prompts.scorer(scale=4.0, image_temperature=40.0, local_weight=0.35, probability_scale=100.0)
    scores, probs = scorer(torch.randn(3, 128), torch.randn(3, 16, 128))
    assert scores.shape == probs.shape == (3, 5)


def test_kinds_select_the_training_sentences(clip, llm_outputs, tmp_path):
    _train(clip, llm_outputs, tmp_path / "r.safetensors", kinds=["relationship"])
    _, meta = HierarchicalPrompts.load(tmp_path / "r.safetensors", clip)
    assert 0 < meta["n_sentences"] < 120
    with pytest.raises(ValueError, match="no sentence of these kinds"):
        _train(clip, llm_outputs, tmp_path / "s.safetensors", kinds=["nonsense"])


def test_a_sentence_fraction_trains_on_a_seeded_part_of_the_sentences(clip, llm_outputs, tmp_path):
    full = _train(clip, llm_outputs, tmp_path / "all.safetensors")
    half = _train(clip, llm_outputs, tmp_path / "half.safetensors", sentence_fraction=0.5)
    _, meta_all = HierarchicalPrompts.load(tmp_path / "all.safetensors", clip)
    _, meta_half = HierarchicalPrompts.load(tmp_path / "half.safetensors", clip)
    assert meta_all["n_train_sentences"] == 108 and meta_half["n_train_sentences"] == 54  # 120 less 12 held out
    assert meta_half["n_sentences"] == meta_all["n_sentences"] == 120
    assert half.steps_run == full.steps_run == 16  # the same step budget, drawn from fewer sentences


def test_an_unusable_llm_hierarchy_falls_back_to_wordnet_and_says_so(clip, llm_outputs, tmp_path):
    """The fixture's LLM grouping is one coarse group: unusable, so ``auto`` takes WordNet's hypernyms and the
    artifact records which source each level came from."""
    _train(clip, llm_outputs, tmp_path / "w.safetensors", hierarchy="auto")
    prompts, meta = HierarchicalPrompts.load(tmp_path / "w.safetensors", clip)
    assert meta["hierarchy"]["requested"] == "auto" and meta["hierarchy"]["sources"][0] != "llm"
    coarse = meta["hierarchy"]["groups"][0]
    assert all(len(g) >= 2 and set(g) <= set(CLASSES) for g in coarse)
    _train(clip, llm_outputs, tmp_path / "l.safetensors", hierarchy="llm")
    _, meta = HierarchicalPrompts.load(tmp_path / "l.safetensors", clip)
    assert meta["hierarchy"]["sources"] == ["llm", "llm"] and meta["hierarchy"]["groups"][0] == [["circle", "square", "star"]]
