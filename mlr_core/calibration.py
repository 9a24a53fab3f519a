r"""Calibration and decision rules: how far a method's probabilities are from frequencies (ECE), and the rule
that turns scores into predicted labels (what a classifier export carries and ``mlr_core.predict`` applies).

Expected calibration error
--------------------------
Every valid (image, class) pair :math:`(i, c) \in V` (targets :math:`y_{ic} \ne -1`) is one binary prediction
with confidence :math:`p_{ic}`. With :math:`B` equal-width bins :math:`b_k = (\frac{k-1}{B}, \frac{k}{B}]`
(the first also holds 0),

.. math::
    \mathrm{ECE} = \sum_k \frac{|b_k|}{|V|}\,\Bigl|\,\overline{y}_{b_k} - \overline{p}_{b_k}\Bigr|

(percent): the per-label (binary, L1) calibration error of torchmetrics' ``BinaryCalibrationError`` over all
labels pooled. A softmax over classes (the zero-shot convention of the prompt methods) is far from calibrated
as a per-label probability; a sigmoid head trained with ASL is closer. Read ECE beside mAP, not instead of it.

Decision rules
--------------
``{"rule": "thresholds", "values": [t_c]}``: class :math:`c` is predicted iff :math:`p_{ic} \ge t_c` (per-class
thresholds, chosen on a validation split: :func:`mlr_core.metrics.f1_thresholds`); ``{"rule": "threshold",
"value": t}``: one threshold for every class; ``{"rule": "top_k", "k": k}``: the :math:`k` highest-scoring
classes of each image (ties: the lower class index, as ``F1@k`` in :mod:`mlr_core.metrics`). Each rule records
``chosen_on``: how it was chosen.

Example:
    >>> import numpy as np
    >>> p = np.array([[0.9, 0.2], [0.6, 0.1], [0.3, 0.4]]); y = np.array([[1, 0], [1, 0], [0, 0]])
    >>> round(expected_calibration_error(p, y, n_bins=2), 2)
    25.0
    >>> predict_labels(p, p, {"rule": "top_k", "k": 1}).astype(int).tolist()
    [[1, 0], [1, 0], [0, 1]]
    >>> predict_labels(p, p, {"rule": "thresholds", "values": [0.5, 0.5]}).astype(int).tolist()
    [[1, 0], [1, 0], [0, 0]]
"""
from __future__ import annotations

import numpy as np

from mlr_core.data.labels import IGNORE

RULES = ("thresholds", "threshold", "top_k")


def expected_calibration_error(probabilities, targets, n_bins: int = 15) -> float:
    """ECE in percent over the valid pairs (module docstring); NaN without a valid pair."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(targets)
    if p.shape != y.shape or p.ndim != 2:
        raise ValueError(f"`probabilities` and `targets` must be (N, C) alike, got {p.shape} and {y.shape}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    valid = y != IGNORE
    p, y = p[valid], (y[valid] == 1).astype(np.float64)
    if not len(p):
        return float("nan")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"probabilities must lie in [0, 1], got [{p.min():.4g}, {p.max():.4g}]")
    bins = np.clip(np.ceil(p * n_bins).astype(np.int64) - 1, 0, n_bins - 1)  # (k-1)/B < p <= k/B; 0 in the first
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, y, n_bins) - np.bincount(bins, p, n_bins))  # |sum y - sum p| per bin
    return 100.0 * float(gap.sum() / count.sum())


def check_decision(decision: dict, n_classes: int, where: str = "decision") -> dict:
    """``decision`` is a well-formed rule for ``n_classes`` classes (a clear error naming ``where`` otherwise)."""
    rule = decision.get("rule") if isinstance(decision, dict) else None
    if rule not in RULES:
        raise ValueError(f"{where}: rule must be one of {RULES}, got {rule!r}")
    if rule == "thresholds":
        values = decision.get("values")
        if not isinstance(values, (list, tuple)) or len(values) != n_classes:
            raise ValueError(f"{where}: 'values' must hold one threshold per class ({n_classes}), got "
                             f"{None if values is None else len(values)}")
    elif rule == "threshold" and not isinstance(decision.get("value"), (int, float)):
        raise ValueError(f"{where}: 'value' must be a number, got {decision.get('value')!r}")
    elif rule == "top_k" and not (isinstance(decision.get("k"), int) and 1 <= decision["k"] <= n_classes):
        raise ValueError(f"{where}: 'k' must be an integer in 1..{n_classes}, got {decision.get('k')!r}")
    return decision


def predict_labels(scores: np.ndarray, probabilities: np.ndarray, decision: dict) -> np.ndarray:
    """(N, C) bool: the classes ``decision`` predicts (thresholds apply to probabilities, top-k to scores)."""
    scores, probabilities = np.asarray(scores, np.float64), np.asarray(probabilities, np.float64)
    check_decision(decision, scores.shape[1])
    if decision["rule"] == "top_k":
        order = np.argsort(-scores, axis=1, kind="stable")[:, :decision["k"]]
        out = np.zeros(scores.shape, bool)
        np.put_along_axis(out, order, True, axis=1)
        return out
    t = np.asarray(decision["values"] if decision["rule"] == "thresholds" else decision["value"], np.float64)
    return probabilities >= t


def decision_metrics(scores: np.ndarray, probabilities: np.ndarray, targets: np.ndarray, decision: dict) -> dict:
    """CP, CR, CF1, OP, OR, OF1 (percent, :mod:`mlr_core.metrics`' definitions) of the labels ``decision``
    predicts, with the rule itself: what a user of the exported classifier gets."""
    from mlr_core.metrics import multilabel_metrics

    predicted = predict_labels(scores, probabilities, decision).astype(np.float64)
    m = multilabel_metrics(predicted, targets, predicted, threshold=0.5, top_k=())
    rule = {k: decision[k] for k in ("rule", "k", "value", "chosen_on") if k in decision}
    return {**rule, **{k: round(m[k], 3) for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")}}


def validation_thresholds(probabilities, targets, default: float) -> dict:
    """The ``thresholds`` rule: per class, the threshold maximising its F1 on a labelled validation part
    (:func:`mlr_core.metrics.f1_thresholds`; ``default`` for a class without a positive there)."""
    from mlr_core.metrics import f1_thresholds

    return {"rule": "thresholds", "values": [float(t) for t in f1_thresholds(probabilities, targets, default)],
            "chosen_on": "per-class F1-maximising thresholds on the validation part of trainval"}


def top_k_decision(k: int) -> dict:
    """The ``top_k`` rule of a method without labelled images to choose thresholds on (zero-shot, text-only)."""
    return {"rule": "top_k", "k": int(k),
            "chosen_on": "evaluate.decision_top_k: fixed, the method has no labelled images to choose thresholds on"}
