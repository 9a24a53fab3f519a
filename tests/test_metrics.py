"""Tests for mlr_core.metrics, using scikit-learn as an independent reference."""

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
)

from mlr_core.metrics import (
    IGNORE,
    MultilabelMetrics,
    average_precision,
    multilabel_metrics,
    precision_recall_curve_points,
)

N, C = 300, 12


def make_data(seed=0, n=N, c=C, ties=True, ignore_frac=0.0, pos_rate=0.3):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < pos_rate).astype(np.int64)
    if ties:  # few distinct values -> many ties
        scores = rng.integers(0, 8, size=(n, c)).astype(np.float64) / 7.0
        scores += 0.3 * targets * rng.integers(0, 2, size=(n, c))  # some signal
    else:
        scores = rng.normal(size=(n, c)) + targets
    if ignore_frac:
        targets[rng.random((n, c)) < ignore_frac] = IGNORE
    return scores, targets


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------
# average precision
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn_with_ties(seed):
    scores, targets = make_data(seed, ties=True)
    for c in range(C):
        if targets[:, c].sum() == 0:
            continue
        ref = average_precision_score(targets[:, c], scores[:, c])
        assert average_precision(scores[:, c], targets[:, c]) == pytest.approx(ref, abs=1e-12)


def test_average_precision_simple_values():
    # positives at ranks 1 and 3 -> (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # all tied: precision of the single threshold step = prevalence
    assert average_precision([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 1]) == pytest.approx(0.5)
    assert math.isnan(average_precision([0.2, 0.1], [0, 0]))
    assert math.isnan(average_precision([0.2, 0.1], [IGNORE, 0]))


def test_average_precision_ignore_equals_dropping():
    scores, targets = make_data(1, ignore_frac=0.2)
    for c in range(C):
        keep = targets[:, c] != IGNORE
        if targets[keep, c].sum() == 0:
            continue
        ref = average_precision_score(targets[keep, c], scores[keep, c])
        assert average_precision(scores[:, c], targets[:, c]) == pytest.approx(ref, abs=1e-12)


# ---------------------------------------------------------------------------
# MultilabelMetrics vs sklearn
# ---------------------------------------------------------------------------
def sklearn_threshold_metrics(targets, pred):
    kw = dict(zero_division=0)
    cp = precision_score(targets, pred, average="macro", **kw)
    cr = recall_score(targets, pred, average="macro", **kw)
    return {
        "CP": 100 * cp,
        "CR": 100 * cr,
        "CF1": 100 * (2 * cp * cr / (cp + cr) if cp + cr else 0.0),
        "CF1_mean_of_f1": 100 * f1_score(targets, pred, average="macro", **kw),
        "OP": 100 * precision_score(targets, pred, average="micro", **kw),
        "OR": 100 * recall_score(targets, pred, average="micro", **kw),
        "OF1": 100 * f1_score(targets, pred, average="micro", **kw),
    }


THRESH_KEYS = ["CP", "CR", "CF1", "CF1_mean_of_f1", "OP", "OR", "OF1"]


@pytest.mark.parametrize("seed", range(3))
def test_map_and_ap_per_class_match_sklearn(seed):
    scores, targets = make_data(seed, ties=True)
    out = multilabel_metrics(scores, targets)
    ref = [100 * average_precision_score(targets[:, c], scores[:, c]) for c in range(C)]
    np.testing.assert_allclose(out["ap_per_class"], ref, atol=1e-9)
    assert out["mAP"] == pytest.approx(np.mean(ref), abs=1e-9)
    assert out["n_classes_with_positives"] == C
    assert out["n_images"] == N


@pytest.mark.parametrize("seed", range(3))
def test_threshold_metrics_match_sklearn_on_scores(seed):
    scores, targets = make_data(seed, ties=True)
    thr = 0.5
    out = multilabel_metrics(scores, targets, threshold=thr)
    ref = sklearn_threshold_metrics(targets, (scores >= thr).astype(int))
    for k in THRESH_KEYS:
        assert out[k] == pytest.approx(ref[k], abs=1e-9), k
    assert out["threshold"] == thr


def test_threshold_metrics_use_probabilities_when_given():
    scores, targets = make_data(3, ties=False)
    probs = sigmoid(scores - 0.7)
    out = multilabel_metrics(scores, targets, probabilities=probs, threshold=0.4)
    ref = sklearn_threshold_metrics(targets, (probs >= 0.4).astype(int))
    for k in THRESH_KEYS:
        assert out[k] == pytest.approx(ref[k], abs=1e-9), k
    # ranking metrics still come from the scores
    assert out["mAP"] == pytest.approx(multilabel_metrics(scores, targets)["mAP"])


def test_threshold_is_inclusive():
    scores = np.array([[0.5, 0.49]])
    targets = np.array([[1, 1]])
    out = multilabel_metrics(scores, targets, threshold=0.5, top_k=())
    assert out["OR"] == pytest.approx(50.0)
    assert out["OP"] == pytest.approx(100.0)


def test_class_without_predictions_has_zero_precision():
    scores, targets = make_data(4, ties=False)
    scores[:, 0] = -10.0  # class 0 never predicted
    out = multilabel_metrics(scores, targets, threshold=0.0)
    ref = sklearn_threshold_metrics(targets, (scores >= 0.0).astype(int))
    for k in THRESH_KEYS:
        assert out[k] == pytest.approx(ref[k], abs=1e-9), k


def test_class_without_positives_excluded_from_map():
    scores, targets = make_data(5, ties=True)
    targets[:, 2] = 0
    targets[:7, 5] = IGNORE
    targets[7:, 5] = 0  # only ignored entries could have been positive
    out = multilabel_metrics(scores, targets)
    assert math.isnan(out["ap_per_class"][2]) and math.isnan(out["ap_per_class"][5])
    keep = [c for c in range(C) if c not in (2, 5)]
    ref = [100 * average_precision_score(targets[:, c], scores[:, c]) for c in keep]
    assert out["n_classes_with_positives"] == C - 2
    assert out["mAP"] == pytest.approx(np.mean(ref), abs=1e-9)
    # threshold metrics still average over all classes (sklearn macro)
    ref_t = sklearn_threshold_metrics(
        np.where(targets == IGNORE, 0, targets),
        ((scores >= 0.5) & (targets != IGNORE)).astype(int),
    )
    for k in THRESH_KEYS:
        assert out[k] == pytest.approx(ref_t[k], abs=1e-9), k


def test_no_positive_at_all_gives_nan_map():
    scores = np.random.default_rng(0).random((10, 4))
    out = multilabel_metrics(scores, np.zeros((10, 4), dtype=int))
    assert math.isnan(out["mAP"]) and out["n_classes_with_positives"] == 0
    assert out["CR"] == 0.0 and out["R@3"] == 0.0


# ---------------------------------------------------------------------------
# IGNORE handling
# ---------------------------------------------------------------------------
def test_ignore_equals_dropping_per_class():
    scores, targets = make_data(6, ties=True, ignore_frac=0.25)
    probs = sigmoid(3 * (scores - 0.5))
    out = multilabel_metrics(scores, targets, probabilities=probs, threshold=0.5, top_k=())
    tp = fp = fn = 0
    P, R, F = [], [], []
    for c in range(C):
        keep = targets[:, c] != IGNORE
        y, s, pred = targets[keep, c], scores[keep, c], (probs[keep, c] >= 0.5).astype(int)
        assert out["ap_per_class"][c] == pytest.approx(
            100 * average_precision_score(y, s), abs=1e-9)
        P.append(precision_score(y, pred, zero_division=0))
        R.append(recall_score(y, pred, zero_division=0))
        F.append(f1_score(y, pred, zero_division=0))
        tp += int(((pred == 1) & (y == 1)).sum())
        fp += int(((pred == 1) & (y == 0)).sum())
        fn += int(((pred == 0) & (y == 1)).sum())
    assert out["CP"] == pytest.approx(100 * np.mean(P))
    assert out["CR"] == pytest.approx(100 * np.mean(R))
    assert out["CF1_mean_of_f1"] == pytest.approx(100 * np.mean(F))
    assert out["OP"] == pytest.approx(100 * tp / (tp + fp))
    assert out["OR"] == pytest.approx(100 * tp / (tp + fn))


def test_ignore_equals_negative_ranked_last():
    """An IGNORE entry must behave like a negative scored below everything else
    (which changes neither AP nor any threshold count)."""
    scores, targets = make_data(7, ties=True, ignore_frac=0.2)
    ign = targets == IGNORE
    scores2 = np.where(ign, scores.min() - 1.0, scores)
    targets2 = np.where(ign, 0, targets)
    a = multilabel_metrics(scores, targets, top_k=())
    b = multilabel_metrics(scores2, targets2, top_k=())
    for k in ["mAP", *THRESH_KEYS]:
        assert a[k] == pytest.approx(b[k], abs=1e-9), k
    np.testing.assert_allclose(a["ap_per_class"], b["ap_per_class"], atol=1e-9)


# ---------------------------------------------------------------------------
# top-k
# ---------------------------------------------------------------------------
def topk_reference(scores, targets, k):
    correct = n_pred = 0
    for s, t in zip(scores.tolist(), targets.tolist()):
        cand = [c for c in range(len(s)) if t[c] != IGNORE]
        cand.sort(key=lambda c: (-s[c], c))
        top = cand[:k]
        n_pred += len(top)
        correct += sum(1 for c in top if t[c] == 1)
    n_pos = int((targets == 1).sum())
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_pos if n_pos else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return 100 * p, 100 * r, 100 * f


@pytest.mark.parametrize("ties,ignore_frac", [(False, 0.0), (True, 0.0), (True, 0.3)])
def test_top_k_matches_loop_reference(ties, ignore_frac):
    scores, targets = make_data(8, ties=ties, ignore_frac=ignore_frac)
    out = multilabel_metrics(scores, targets, top_k=(1, 3, 5))
    for k in (1, 3, 5):
        p, r, f = topk_reference(scores, targets, k)
        assert out[f"P@{k}"] == pytest.approx(p, abs=1e-9)
        assert out[f"R@{k}"] == pytest.approx(r, abs=1e-9)
        assert out[f"F1@{k}"] == pytest.approx(f, abs=1e-9)


def test_top_k_denominator_without_ignore_is_n_times_k():
    scores, targets = make_data(9, ties=False)
    out = multilabel_metrics(scores, targets, top_k=(3,))
    correct = sum(
        int(targets[i, np.argsort(-scores[i])[:3]].sum()) for i in range(N))
    assert out["P@3"] == pytest.approx(100 * correct / (N * 3))
    assert out["R@3"] == pytest.approx(100 * correct / targets.sum())


def test_top_k_clamped_to_num_classes():
    scores, targets = make_data(10, c=4, ties=False)
    out = multilabel_metrics(scores, targets, top_k=(3, 5))
    # k=5 > 4 classes: every class predicted -> recall 100, precision = prevalence
    assert out["R@5"] == pytest.approx(100.0)
    assert out["P@5"] == pytest.approx(100 * targets.mean())
    assert set(out) >= {"P@3", "R@3", "F1@3", "P@5", "R@5", "F1@5"}


def test_output_keys_and_types():
    scores, targets = make_data(11)
    out = multilabel_metrics(scores, targets)
    expected = {"mAP", "ap_per_class", "CP", "CR", "CF1", "CF1_mean_of_f1", "OP", "OR",
                "OF1", "P@3", "R@3", "F1@3", "P@5", "R@5", "F1@5", "threshold",
                "n_images", "n_classes_with_positives"}
    assert set(out) == expected
    for k in expected - {"ap_per_class", "n_images", "n_classes_with_positives"}:
        assert isinstance(out[k], float), k
    assert isinstance(out["ap_per_class"], list) and len(out["ap_per_class"]) == C
    for k in ["mAP", *THRESH_KEYS, "P@3", "R@5"]:
        assert 0.0 <= out[k] <= 100.0


# ---------------------------------------------------------------------------
# streaming
# ---------------------------------------------------------------------------
def test_streaming_equals_single_batch():
    scores, targets = make_data(12, ties=True, ignore_frac=0.1)
    probs = sigmoid(scores)
    full = multilabel_metrics(scores, targets, probabilities=probs, threshold=0.6)
    m = MultilabelMetrics(C, threshold=0.6)
    for sl in np.array_split(np.arange(N), [0, 17, 100, 101, 250]):  # includes an empty batch
        m.update(scores[sl], targets[sl], probs[sl])
    streamed = m.compute()
    assert streamed.keys() == full.keys()
    for k, v in full.items():
        if k == "ap_per_class":
            np.testing.assert_allclose(streamed[k], v, atol=1e-12)
        else:
            assert streamed[k] == pytest.approx(v, abs=1e-12), k
    m.reset()
    with pytest.raises(RuntimeError):
        m.compute()
    m.update(scores[:50], targets[:50], probs[:50])
    assert m.compute()["n_images"] == 50


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    scores, targets = make_data(13)
    a = multilabel_metrics(torch.tensor(scores, requires_grad=True), torch.tensor(targets))
    b = multilabel_metrics(scores, targets)
    assert a["mAP"] == pytest.approx(b["mAP"])
    assert a["OF1"] == pytest.approx(b["OF1"])


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_shape_mismatch_raises():
    m = MultilabelMetrics(num_classes=3)
    with pytest.raises(ValueError, match=r"`targets`.*same shape"):
        m.update(np.zeros((4, 3)), np.zeros((5, 3), dtype=int))
    with pytest.raises(ValueError, match=r"`scores`.*\(N, 3\)"):
        m.update(np.zeros((4, 2)), np.zeros((4, 2), dtype=int))
    with pytest.raises(ValueError, match=r"`scores`.*2-D"):
        m.update(np.zeros(4), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match=r"`probabilities`.*same shape"):
        m.update(np.zeros((4, 3)), np.zeros((4, 3), dtype=int), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"`scores` and `targets`"):
        average_precision(np.zeros(3), np.zeros(4, dtype=int))


def test_invalid_target_value_raises():
    targets = np.zeros((4, 3), dtype=int)
    targets[1, 2] = 2
    with pytest.raises(ValueError, match=r"`targets`.*-1 \(IGNORE\), 0 or 1.*2"):
        multilabel_metrics(np.zeros((4, 3)), targets)
    with pytest.raises(ValueError, match=r"`targets`"):
        multilabel_metrics(np.zeros((4, 3)), np.full((4, 3), 0.5))


def test_nan_score_raises():
    scores = np.zeros((4, 3))
    scores[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"`scores`.*finite.*1 NaN"):
        multilabel_metrics(scores, np.zeros((4, 3), dtype=int))
    with pytest.raises(ValueError, match=r"`scores`.*finite"):
        average_precision([0.1, np.inf], [0, 1])


def test_other_bad_inputs_raise():
    with pytest.raises(ValueError, match="probabilities.*\\[0, 1\\]"):
        multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 3), dtype=int),
                           probabilities=np.full((2, 3), 2.0))
    with pytest.raises(ValueError, match="dtype"):
        multilabel_metrics(np.array([["a", "b"]]), np.zeros((1, 2), dtype=int))
    with pytest.raises(ValueError, match="num_classes"):
        MultilabelMetrics(0)
    with pytest.raises(ValueError, match="top_k"):
        MultilabelMetrics(3, top_k=(0,))
    m = MultilabelMetrics(3)
    m.update(np.zeros((2, 3)), np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="every update"):
        m.update(np.zeros((2, 3)), np.zeros((2, 3), dtype=int), np.zeros((2, 3)))


# ---------------------------------------------------------------------------
# precision-recall curve
# ---------------------------------------------------------------------------
def test_pr_curve_matches_sklearn_micro():
    scores, targets = make_data(14, ties=True, ignore_frac=0.1)
    pts = precision_recall_curve_points(scores, targets, max_points=10_000)
    keep = targets != IGNORE
    p, r, t = precision_recall_curve(targets[keep], scores[keep])
    # sklearn: increasing thresholds + final (R=0, P=1) point; ours: decreasing thresholds
    np.testing.assert_allclose([d["precision"] for d in pts], p[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose([d["recall"] for d in pts], r[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose([d["threshold"] for d in pts], t[::-1], atol=1e-12)


def test_pr_curve_downsampled():
    scores, targets = make_data(15, ties=False)
    full = precision_recall_curve_points(scores, targets, max_points=10**9)
    pts = precision_recall_curve_points(scores, targets, max_points=50)
    assert 2 <= len(pts) <= 50
    assert pts[0] == full[0] and pts[-1] == full[-1]
    assert pts[-1]["recall"] == pytest.approx(1.0)
    recalls = [d["recall"] for d in pts]
    assert recalls == sorted(recalls)
    assert set(pts[0]) == {"recall", "precision", "threshold"}
    assert precision_recall_curve_points(scores, np.zeros_like(targets)) == []
    with pytest.raises(ValueError, match="max_points"):
        precision_recall_curve_points(scores, targets, max_points=1)


def test_large_input_is_fast():
    """Smoke test of the vectorised path on a moderately large input."""
    rng = np.random.default_rng(16)
    n, c = 20_000, 81
    targets = (rng.random((n, c)) < 0.05).astype(np.int8)
    scores = rng.random((n, c)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = multilabel_metrics(scores, targets)
    assert out["n_images"] == n and 0 <= out["mAP"] <= 100
