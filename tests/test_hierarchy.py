"""Class hierarchies for the data-free method's partial-shared tokens (mlr_core.text.hierarchy): when an
LLM level is usable, the WordNet and text-embedding fallbacks, and resolve_hierarchy's choice of source.

WordNet comes from the project's NLTK data (``python -m mlr_core.text.nltk_data``, run by ``make setup``);
the module fixture provisions it as tests/test_noun_filter.py does where it is missing.
"""
from __future__ import annotations

import numpy as np
import pytest

from mlr_core.data.tinyworld import CLASSES as TINY_CLASSES
from mlr_core.text import hierarchy, nltk_data
from mlr_core.text.hierarchy import (SOURCES, class_synset, embedding_groups, resolve_hierarchy, usable,
                                     wordnet_groups, wordnet_subgroups)
from fixtures_real import COCO_CATEGORIES, VOC_CLASSES

COCO_CLASSES = tuple(name for _, name, _ in COCO_CATEGORIES)
COCO_SUPER = {name: sup for _, name, sup in COCO_CATEGORIES}
VOC_ANIMALS = {"bird", "cat", "cow", "dog", "horse", "sheep"}
VOC_VEHICLES = {"aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"}
DATASETS = {"tinyworld": TINY_CLASSES, "voc": VOC_CLASSES, "coco": COCO_CLASSES}


@pytest.fixture(scope="module")
def wordnet():
    target = nltk_data.default_target()
    if nltk_data.RESOURCE_BY_NAME["wordnet"] in nltk_data.missing_resources([target]):
        nltk_data.provision(target, verify=False, names=("wordnet",))
    return hierarchy._wordnet()


def group_of(groups: list[list[str]], name: str) -> int | None:
    return next((i for i, g in enumerate(groups) if name in g), None)


def together(groups: list[list[str]], *names: str) -> bool:
    first = group_of(groups, names[0])
    return first is not None and all(group_of(groups, n) == first for n in names[1:])


def check_level(groups: list[list[str]], classes) -> None:
    """Members are classes, in class order, >= 2 per group, no class in two groups: what
    mlr_core.methods.datafree.group_index reads (not imported here: it pulls in torch)."""
    seen: set[str] = set()
    order = {c: i for i, c in enumerate(classes)}
    for g in groups:
        assert len(g) >= 2 and set(g) <= set(classes), g
        assert [order[c] for c in g] == sorted(order[c] for c in g)
        assert not seen & set(g), (seen & set(g), groups)
        seen |= set(g)


# ------------------------------------------------------------------------------------------------ usable
def test_usable_edge_cases():
    classes = ["a", "b", "c", "d"]
    assert usable([["a", "b"], ["c", "d"]], classes)
    assert not usable([], classes)
    assert not usable([["a", "b"]], classes)  # one group (the tinyworld LLM case)
    assert usable([["a", "b"]], classes, min_groups=1)
    assert not usable([["a"], ["b"], ["c"], ["d"]], classes)  # singletons are no groups
    assert not usable([["a", "a"], ["c", "d"]], classes)  # a repeated member is one class
    assert not usable([["a", "x"], ["c", "d"]], classes)  # "x" is no class: the first group has one
    assert usable([["a", "b"], ["b", "c"]], classes, min_coverage=0.75)  # 3 of 4 covered
    assert not usable([["a", "b"], ["b", "c"]], classes, min_coverage=0.76)
    assert usable([["a", "b"], ["c", "d"]], classes, min_coverage=1.0)
    assert not usable([["a", "b"], ["c", "d"]], [])
    assert usable([["a", "b"], ["c", "d"]], classes + ["e", "f", "g", "h"])  # exactly 0.5
    assert not usable([["a", "b"], ["c", "d"]], classes + ["e", "f", "g", "h", "i"])


# ----------------------------------------------------------------------------------------------- WordNet
def test_class_synset_lookup(wordnet):
    name = lambda c: class_synset(c, wordnet).name()  # noqa: E731
    assert name("traffic light") == "traffic_light.n.01"  # underscores
    assert name("Dog") == "dog.n.01"
    assert name("skis") == "ski.n.01"  # WordNet's morphology
    assert name("wine glass") == "wineglass.n.01"  # written as one word
    assert name("diningtable") == "dining_table.n.01"  # VOC's glued compounds
    assert name("tvmonitor") == "television_monitor.n.01"
    assert name("stop sign") == "sign.n.01"  # head noun: the last word
    assert name("pottedplant") == "plant.n.01"  # head noun: the longest noun suffix
    assert class_synset("zzxq qxzz", wordnet) is None
    assert class_synset("", wordnet) is None


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("n_groups", [2, 4, 8])
def test_wordnet_groups_are_a_deterministic_partition(dataset, n_groups, wordnet):
    classes = DATASETS[dataset]
    groups = wordnet_groups(classes, n_groups)
    check_level(groups, classes)
    assert groups == wordnet_groups(classes, n_groups)
    assert 1 <= len(groups) <= n_groups + 2  # "about" n_groups
    # The order of the classes only orders the output.
    shuffled = list(np.random.default_rng(0).permutation(classes))
    again = wordnet_groups(shuffled, n_groups)
    assert sorted(map(sorted, again)) == sorted(map(sorted, groups))


def test_wordnet_subgroups_are_named_by_the_common_hypernym(wordnet):
    named = wordnet_subgroups(VOC_CLASSES, 6)
    assert [g["classes"] for g in named] == wordnet_groups(VOC_CLASSES, 6)
    assert all(isinstance(g["name"], str) and g["name"] and "_" not in g["name"] for g in named)
    furniture = next(g for g in named if "chair" in g["classes"])
    assert furniture["name"] == "furniture" and {"sofa", "diningtable"} <= set(furniture["classes"])


def test_wordnet_groups_voc(wordnet):
    for n_groups in (4, 6):
        groups = wordnet_groups(VOC_CLASSES, n_groups)
        assert len(groups) == n_groups
        for g in groups:  # animals and vehicles never share a group
            assert not (set(g) & VOC_ANIMALS and set(g) & VOC_VEHICLES), g
        assert together(groups, "cat", "dog") and together(groups, "cow", "sheep")
        assert together(groups, "car", "motorbike") and together(groups, "bus", "train")
        assert together(groups, "chair", "sofa", "diningtable")
        assert sum(len(set(g) & VOC_VEHICLES) for g in groups) >= 6  # vehicles are grouped, ...
        assert sum(len(set(g) & VOC_ANIMALS) for g in groups) >= 5  # ... animals too
    coarse = wordnet_groups(VOC_CLASSES, 4)
    assert together(coarse, "cat", "dog", "horse", "sheep", "cow")
    assert together(coarse, "aeroplane", "boat", "car", "bicycle")


def test_wordnet_groups_coco(wordnet):
    for n_groups in (8, 12, 20):
        groups = wordnet_groups(COCO_CLASSES, n_groups)
        assert abs(len(groups) - n_groups) <= 2
        for g in groups:
            sup = {COCO_SUPER[c] for c in g}
            assert not {"animal", "vehicle"} <= sup, g
        assert together(groups, "cat", "dog") and together(groups, "fork", "spoon")
        assert together(groups, "apple", "orange") and together(groups, "bus", "train")
    coarse = wordnet_groups(COCO_CLASSES, 12)
    assert usable(coarse, COCO_CLASSES)
    assert together(coarse, "car", "truck", "bicycle", "airplane")
    assert together(coarse, "chair", "couch", "bed", "dining table")


def test_wordnet_groups_tinyworld_is_usable_where_the_llm_is_not(wordnet):
    groups = wordnet_groups(TINY_CLASSES, 4)
    assert len(groups) == 4 and usable(groups, TINY_CLASSES)
    assert together(groups, "circle", "square", "triangle", "hexagon", "trapezoid")
    assert together(groups, "tree", "flower")


def test_wordnet_groups_leave_unknown_classes_out(wordnet):
    groups = wordnet_groups(["cat", "dog", "zzxq", "car", "bus"], 2)
    assert groups == [["cat", "dog"], ["car", "bus"]]
    with pytest.raises(ValueError, match="distinct"):
        wordnet_groups(["cat", "cat"], 1)
    with pytest.raises(ValueError, match="n_groups"):
        wordnet_groups(["cat", "dog"], 0)


# -------------------------------------------------------------------------------------------- embeddings
def planted(seed: int = 0, sizes=(5, 4, 6, 3), dim: int = 32, noise: float = 0.15):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(len(labels))
    labels = labels[perm]
    feats = centres[labels] + noise * rng.normal(size=(len(labels), dim)) * np.linalg.norm(centres, axis=1).mean()
    feats *= rng.uniform(0.5, 3.0, size=(len(labels), 1))  # scale does not matter to cosine
    classes = [f"c{i:02d}" for i in range(len(labels))]
    truth = sorted(sorted(c for c, lab in zip(classes, labels) if lab == k) for k in range(len(sizes)))
    return feats, classes, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_embedding_groups_recover_planted_clusters(seed):
    feats, classes, truth = planted(seed)
    groups = embedding_groups(feats, classes, 4)
    assert sorted(map(sorted, groups)) == truth
    check_level(groups, classes)
    assert embedding_groups(feats, classes, 4) == groups
    # One outlier: a singleton cluster, dropped.
    outlier = -feats.sum(axis=0, keepdims=True)
    groups5 = embedding_groups(np.vstack([feats, outlier]), classes + ["odd"], 5)
    assert sorted(map(sorted, groups5)) == truth
    assert embedding_groups(feats, classes, len(classes)) == []  # all singletons
    assert sorted(map(sorted, embedding_groups(feats, classes, 1))) == [sorted(classes)]


def test_embedding_groups_match_scipy_average_linkage():
    cluster = pytest.importorskip("scipy.cluster.hierarchy")
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(25, 8))
    classes = [f"k{i}" for i in range(25)]
    x = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    dist = np.clip(1 - x @ x.T, 0, None)
    dist = (dist + dist.T) / 2
    np.fill_diagonal(dist, 0)
    from scipy.spatial.distance import squareform

    for k in (3, 6, 10):
        labels = cluster.fcluster(cluster.linkage(squareform(dist, checks=False), "average"), k, "maxclust")
        ref = sorted(sorted(c for c, lab in zip(classes, labels) if lab == g) for g in set(labels))
        assert sorted(map(sorted, embedding_groups(feats, classes, k))) == [g for g in ref if len(g) >= 2]


def test_embedding_groups_reject_bad_input():
    with pytest.raises(ValueError, match="C, D"):
        embedding_groups(np.ones((3, 4)), ["a", "b"], 1)
    with pytest.raises(ValueError, match="zero"):
        embedding_groups(np.array([[1.0, 0.0], [0.0, 0.0]]), ["a", "b"], 1)
    with pytest.raises(ValueError, match="n_groups"):
        embedding_groups(np.eye(2), ["a", "b"], 0)


# --------------------------------------------------------------------------------------------- resolving
def llm_file(coarse, fine=()):
    return {"coarse": [{"name": f"g{i}", "classes": list(g)} for i, g in enumerate(coarse)],
            "fine": [{"name": f"f{i}", "classes": list(g)} for i, g in enumerate(fine)]}


def test_resolve_auto_prefers_a_usable_llm_level(wordnet):
    feats, _, _ = planted(0, sizes=(10, 10))
    classes = list(TINY_CLASSES)
    coarse = [classes[:8], classes[8:16]]
    fine = [classes[0:3], classes[3:6], classes[8:11], classes[11:14]]
    groups, used = resolve_hierarchy(classes, source="auto", llm_subgroups=llm_file(coarse, fine),
                                     n_groups=(4, 8), class_features=feats)
    assert used == ["llm", "llm"] and groups == [coarse, fine]


def test_resolve_auto_falls_back_to_wordnet_on_the_tinyworld_llm_grouping(wordnet):
    classes = list(TINY_CLASSES)
    llm = llm_file([["circle", "square"]], [])  # what the bundled LLM gives on the default run
    groups, used = resolve_hierarchy(classes, source="auto", llm_subgroups=llm, n_groups=(4, 8),
                                     class_features=None)
    assert used == ["wordnet", "wordnet"]
    assert groups == [wordnet_groups(classes, 4), wordnet_groups(classes, 8)]
    for level in groups:
        check_level(level, classes)
    # No LLM file at all: the same.
    assert resolve_hierarchy(classes, source="auto", llm_subgroups=None, n_groups=(4, 8),
                             class_features=None) == (groups, used)


def test_resolve_auto_falls_back_to_embeddings(monkeypatch, wordnet):
    feats, classes, truth = planted(1)
    llm = llm_file([classes[:2]], [])
    # Made-up names: WordNet knows none of them, so its level is empty and unusable.
    groups, used = resolve_hierarchy(classes, source="auto", llm_subgroups=llm, n_groups=(4,),
                                     class_features=feats)
    assert used == ["embedding"] and sorted(map(sorted, groups[0])) == truth

    def no_wordnet():
        raise RuntimeError("NLTK data missing: wordnet")

    monkeypatch.setattr(hierarchy, "_wordnet", no_wordnet)
    with pytest.warns(UserWarning, match="WordNet skipped"):
        groups, used = resolve_hierarchy(list(TINY_CLASSES), source="auto", llm_subgroups=None, n_groups=(3,),
                                         class_features=planted(0, sizes=(10, 10))[0])
    assert used == ["embedding"] and len(groups[0]) >= 1
    with pytest.raises(ValueError, match="'wordnet'.*NLTK data missing"):
        resolve_hierarchy(list(TINY_CLASSES), source="wordnet", llm_subgroups=None, n_groups=(3,),
                          class_features=None)
    with pytest.warns(UserWarning):  # nothing at all: the LLM's level as it is, else no groups
        assert resolve_hierarchy(["a", "b"], source="auto", llm_subgroups=llm_file([["a", "b"]]), n_groups=(1,),
                                 class_features=None) == ([[["a", "b"]]], ["llm"])
        assert resolve_hierarchy(["a", "b"], source="auto", llm_subgroups=None, n_groups=(1,),
                                 class_features=None) == ([[]], ["none"])


def test_resolve_explicit_sources_and_errors(wordnet):
    classes = list(VOC_CLASSES)
    llm = llm_file([["cat", "dog"]], [["car", "bus"]])
    assert resolve_hierarchy(classes, source="llm", llm_subgroups=llm, n_groups=(6, 10),
                             class_features=None) == ([[["cat", "dog"]], [["car", "bus"]]], ["llm", "llm"])
    groups, used = resolve_hierarchy(classes, source="wordnet", llm_subgroups=llm, n_groups=(6,),
                                     class_features=None)
    assert used == ["wordnet"] and groups == [wordnet_groups(classes, 6)]
    feats = np.random.default_rng(0).normal(size=(len(classes), 8))
    groups, used = resolve_hierarchy(classes, source="embedding", llm_subgroups=None, n_groups=(4, 8),
                                     class_features=feats)
    assert used == ["embedding", "embedding"]
    assert groups == [embedding_groups(feats, classes, 4), embedding_groups(feats, classes, 8)]

    with pytest.raises(ValueError, match="'embedding'.*class_features"):
        resolve_hierarchy(classes, source="embedding", llm_subgroups=llm, n_groups=(4,), class_features=None)
    with pytest.raises(ValueError, match="'llm'"):
        resolve_hierarchy(classes, source="llm", llm_subgroups=None, n_groups=(4,), class_features=None)
    with pytest.raises(ValueError, match="'llm'.*level 2"):
        resolve_hierarchy(classes, source="llm", llm_subgroups=llm, n_groups=(4, 8, 12), class_features=None)
    with pytest.raises(ValueError, match="valid sources: auto, llm, wordnet, embedding") as e:
        resolve_hierarchy(classes, source="chatgpt", llm_subgroups=llm, n_groups=(4,), class_features=None)
    assert "'chatgpt'" in str(e.value) and SOURCES == ("auto", "llm", "wordnet", "embedding")
