"""The training-free refiners (mlr_core.methods.sparc, mlr_core.methods.class_concepts) against hand
computations on small matrices, and the transductive / reference-set forms of SPARC."""
from __future__ import annotations

import statistics
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mlr_core.methods import class_concepts as cc
from mlr_core.methods import sparc as sp

E = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 9.0], [0.0, 1.0, 5.0], [3.0, 3.5, 2.0], [1.0, 0.0, 2.5]])
S = np.array([[0.2, 0.3, 0.1], [0.5, 0.1, 0.3], [0.4, 0.4, 0.1], [0.3, 0.2, 0.6], [0.1, 0.5, 0.2]])
P = np.array([[0.3, 0.1], [0.2, 0.6], [0.5, 0.2], [0.4, 0.3], [0.1, 0.2]])
MEMBERS = [(0, 1), (1, 2)]  # compound 0 names classes 0, 1; compound 1 names 1, 2


def test_per_image_standardisation_by_hand():
    got = sp.standardise_rows(E)
    for i, row in enumerate(E):
        mu, sd = statistics.fmean(row), statistics.stdev(row)
        assert got[i] == pytest.approx([(x - mu) / sd for x in row])
    assert sp.standardise_rows(E[:1])[0] == pytest.approx([-1.0, 0.0, 1.0])  # mean 2, sample std 1
    # compounds with the image's bare-name statistics, not their own
    got = sp.standardise_rows(P, like=S)
    for i in range(len(P)):
        mu, sd = statistics.fmean(S[i]), statistics.stdev(S[i])
        assert got[i] == pytest.approx([(x - mu) / sd for x in P[i]])


def test_across_image_standardisation_by_hand():
    mean, std = sp.column_statistics(E)
    for c in range(E.shape[1]):
        assert mean[c] == pytest.approx(statistics.fmean(E[:, c]))
        assert std[c] == pytest.approx(statistics.stdev(E[:, c]))


def test_pca_direction_by_hand():
    t = np.array([[-2.0], [-1.0], [0.5], [3.0]])
    assert sp.pca_direction(t * [1.0, 2.0]) == pytest.approx([1 / 3, 2 / 3])      # along (1, 2), L1 = 1
    assert sp.pca_direction(t * [-1.0, -2.0]) == pytest.approx([1 / 3, 2 / 3])    # sign: positive mean
    assert sp.pca_direction(t * [1.0, -3.0] + 5.0) == pytest.approx([-0.25, 0.75])  # centred; mean -0.25 + 0.75 > 0


def _hand_sparc(E, S, P, members, w=0.5):
    """SPARC written out by loops: per-image z, across-image z, per class sorted compounds + base, the
    covariance's top eigenvector (numpy.linalg.eigh, not the SVD the module uses)."""
    n, C = E.shape
    e1 = [[(E[i][c] - statistics.fmean(E[i])) / statistics.stdev(E[i]) for c in range(C)] for i in range(n)]
    p1 = [[(P[i][k] - statistics.fmean(S[i])) / statistics.stdev(S[i]) for k in range(P.shape[1])] for i in range(n)]

    def zcol(x):
        cols = list(zip(*x))
        return [[(x[i][j] - statistics.fmean(cols[j])) / statistics.stdev(cols[j]) for j in range(len(cols))]
                for i in range(len(x))]

    e2, p2 = np.array(zcol(e1)), np.array(zcol(p1))
    out = e2.copy()
    for c in range(C):
        ks = [k for k, m in enumerate(members) if c in m]
        z = np.concatenate([np.sort(p2[:, ks], axis=1), e2[:, c:c + 1]], axis=1)
        vals, vecs = np.linalg.eigh(np.cov(z, rowvar=False))
        u = vecs[:, np.argmax(vals)]
        u = (u if u.mean() > 0 else -u) / np.abs(u).sum()
        out[:, c] = w * (z @ u) + (1 - w) * e2[:, c]
    return out


def test_sparc_against_a_hand_computation():
    assert sp.sparc(E, S, P, MEMBERS, sp.SparcConfig()) == pytest.approx(_hand_sparc(E, S, P, MEMBERS))


def test_sparc_ablations_switch_steps_off():
    std = sp.sparc(E, S, P, MEMBERS, sp.SparcConfig().variant("standardise"))
    z1 = sp.standardise_rows(E)
    assert std == pytest.approx((z1 - z1.mean(0)) / z1.std(0, ddof=1))
    assert sp.sparc(E, S, P, MEMBERS, sp.SparcConfig().variant("per_image")) == pytest.approx(z1)
    across = sp.sparc(E, S, P, MEMBERS, sp.SparcConfig().variant("across_image"))
    assert across == pytest.approx((E - E.mean(0)) / E.std(0, ddof=1))
    # a class no compound names keeps its standardised base score
    out = sp.sparc(E, S, P, [(0, 1)], sp.SparcConfig())
    assert out[:, 2] == pytest.approx(std[:, 2])
    with pytest.raises(ValueError, match="unknown SPARC variant"):
        sp.SparcConfig().variant("magic")


def test_transductive_and_reference_forms_differ_only_in_where_the_statistics_come_from():
    rng = np.random.default_rng(1)
    ref = (rng.normal(size=(40, 3)), rng.normal(size=(40, 3)), rng.normal(size=(40, 2)))
    cfg = sp.SparcConfig()
    # the reference form with the evaluated images as the reference set is the transductive form
    assert sp.sparc(E, S, P, MEMBERS, cfg, reference=(E, S, P)) == pytest.approx(sp.sparc(E, S, P, MEMBERS, cfg))
    # with another set: the same computation, with that set's statistics
    stats = sp.fit_statistics(*ref, MEMBERS, cfg)
    got = sp.sparc(E, S, P, MEMBERS, cfg, reference=ref)
    assert got == pytest.approx(sp.apply_statistics(E, S, P, MEMBERS, stats, cfg))
    assert not np.allclose(got, sp.sparc(E, S, P, MEMBERS, cfg))
    # the statistics depend on the reference set alone: other evaluated images do not move them, and an image's
    # refined score does not depend on the other evaluated images
    assert sp.sparc(E[:2], S[:2], P[:2], MEMBERS, cfg, reference=ref) == pytest.approx(got[:2])


def test_compound_prompts_from_cooccurrence():
    labels = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 1, 0]])
    # pair counts: (0, 1) 3, (0, 2) 2, (1, 2) 1, (2, 3) 1; each class's most frequent pair
    assert sp.cooccurring_sets(labels, 2, 1) == [(0, 1), (0, 2), (2, 3)]
    # class 1's second: (1, 2) (count 1); class 3 has only (2, 3); ties go by class index
    assert sp.cooccurring_sets(labels, 2, 2) == [(0, 1), (0, 2), (1, 2), (2, 3)]
    prompts, members = sp.compound_prompts(labels, list("abcd"), pairs_per_class=1, triples_per_class=1,
                                           pair_template="a {} and a {}", triple_template="{}, {} and {}")
    assert len(prompts) == len(members) and prompts[members.index((0, 1, 2))] == "a, b and c"


def _direct_concept_scores(g, d, bank, labels, tau):
    """Class concepts and their scores by loops (no refinement)."""
    bank = [b / np.linalg.norm(b) for b in bank]
    concepts = []
    for c in range(labels.shape[1]):
        members = [bank[m] for m in range(len(bank)) if labels[m, c] > 0]
        mean = np.mean(members, axis=0)
        concepts.append(mean / np.linalg.norm(mean))
    out = np.zeros((len(g), len(concepts)))
    for i in range(len(g)):
        gi = g[i] / np.linalg.norm(g[i])
        for c, k in enumerate(concepts):
            cos = [float(dj @ k / np.linalg.norm(dj)) for dj in d[i]]
            weights = np.exp(tau * np.array(cos)) / np.exp(tau * np.array(cos)).sum()
            out[i, c] = float(gi @ k) + float(weights @ np.array(cos))
    return out


def test_class_concept_scores_against_a_direct_computation():
    rng = np.random.default_rng(0)
    g, d = rng.normal(size=(3, 6)), rng.normal(size=(3, 4, 6))
    bank, labels = rng.normal(size=(8, 6)), np.array([[1, 0], [0, 1], [1, 1], [1, 0]] * 2)
    tb, tl = torch.tensor(bank, dtype=torch.float32), torch.tensor(labels)
    cfg = cc.ConceptConfig(refine=False, pool_temperature=5.0)
    got = cc.concept_scores(torch.tensor(g, dtype=torch.float32), torch.tensor(d, dtype=torch.float32), tb,
                            cc.class_concepts(tb, tl), cfg)
    assert got.numpy() == pytest.approx(_direct_concept_scores(g, d, bank, labels, 5.0), abs=1e-5)
    # a class no text mentions scores 0
    k = cc.class_concepts(tb, torch.cat([tl, torch.zeros(8, 1, dtype=torch.long)], 1))
    assert torch.all(k[2] == 0)


def test_feature_refinement_against_a_direct_computation():
    rng = np.random.default_rng(2)
    x, bank = rng.normal(size=(2, 5)), rng.normal(size=(7, 5))
    nb = bank / np.linalg.norm(bank, axis=1, keepdims=True)

    def attend(q, part, t):
        q = q / np.linalg.norm(q)
        a = np.exp(t * part @ q)
        v = (a / a.sum()) @ part
        return v / np.linalg.norm(v)

    got = cc.refine_features(torch.tensor(x, dtype=torch.float32), torch.tensor(bank, dtype=torch.float32), 3.0, 1, 0)
    assert got.numpy() == pytest.approx(np.stack([attend(r, nb, 3.0) for r in x]), abs=1e-5)
    # groups: attended in turn, in the seeded order of the bank's rows
    order = torch.randperm(7, generator=torch.Generator().manual_seed(0)).tensor_split(2)
    want = []
    for r in x:
        for part in order:
            r = attend(r, nb[part.numpy()], 3.0)
        want.append(r)
    got = cc.refine_features(torch.tensor(x, dtype=torch.float32), torch.tensor(bank, dtype=torch.float32), 3.0, 2, 0)
    assert got.numpy() == pytest.approx(np.stack(want), abs=1e-5)


def test_logit_ensemble_and_bank_subset():
    base, concept = np.array([[4.0, 0.0]]), np.array([[0.2, 0.6]])
    assert cc.logit_ensemble(base, 4.0, concept, 0.5)[0] == pytest.approx([0.6, 0.3])
    assert cc.bank_subset(10, 1.0, 0).tolist() == list(range(10))
    part = cc.bank_subset(100, 0.1, 3)
    assert len(part) == 10 and part.tolist() == sorted(part.tolist()) and part.tolist() == cc.bank_subset(100, 0.1, 3).tolist()


def test_refined_result_names_aggregate_in_the_report():
    from mlr_core.refine import base_runs
    from mlr_core.report import split_run

    params = SimpleNamespace(refine=SimpleNamespace(bases=["zsclip", "tai_dpt"]),
                             tai_dpt=SimpleNamespace(runs=["s0", "s1", "no_such_control_s0"]))
    runs = base_runs(params)
    assert [r.key for r in runs] == ["zsclip", "tai_dpt/s0", "tai_dpt/s1"]
    assert [split_run(r.name("-ref")) for r in runs] == [("zsclip-ref", None), ("tai_dpt-ref", 0), ("tai_dpt-ref", 1)]
    assert split_run(runs[1].name()) == ("tai_dpt", 0)
