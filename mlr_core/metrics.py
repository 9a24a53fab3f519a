r"""Multi-label recognition (MLR) metrics, numpy only.

The module follows the torchmetrics pattern *validate -> format -> update -> compute*:
every public entry point validates its inputs (clear ``ValueError`` naming the argument),
formats them to canonical numpy arrays (``float64`` scores, ``int8`` targets), accumulates
them, and computes the metrics from the accumulated state.

Notation
--------
``N`` images, ``C`` classes, scores :math:`s_{ic}` (any real number, higher = more
confident; logits, cosine similarities or probabilities), optional probabilities
:math:`p_{ic} \in [0, 1]` and targets :math:`y_{ic} \in \{-1, 0, 1\}` where ``-1`` is
:data:`IGNORE` (unknown label, e.g. VOC "difficult" objects or missing partial labels).
The set of *valid* pairs is :math:`V = \{(i, c) : y_{ic} \neq -1\}`; **every count
below is restricted to** :math:`V`, so an ignored entry is exactly equivalent to dropping
that (image, class) pair.

Inputs may be numpy arrays, nested lists or torch tensors (converted with
``.detach().cpu().numpy()`` by duck typing; torch itself is never imported).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from mlr_core.data.labels import IGNORE  # the data layer owns the encoding; re-exported here

__all__ = [
    "IGNORE",
    "average_precision",
    "MultilabelMetrics",
    "f1_thresholds",
    "multilabel_metrics",
    "precision_recall_curve_points",
    "zero_shot_metrics",
]

_VALID_TARGET_VALUES = (IGNORE, 0, 1)


# ---------------------------------------------------------------------------
# validation / formatting helpers
# ---------------------------------------------------------------------------
def _to_numpy(x, name: str) -> np.ndarray:
    """Convert ``x`` (numpy array, list, torch tensor, ...) to a numpy array."""
    if x is None:
        raise ValueError(f"`{name}` must be an array, got None")
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):  # torch.Tensor
        t = x.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # e.g. bfloat16, which numpy does not know
            return t.float().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"`{name}` could not be converted to a numpy array: {exc}") from exc


def _check_numeric(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"`{name}` must have a real numeric or boolean dtype, got dtype {arr.dtype}"
        )


def _to_numeric_array(x, name: str, ndim: int | None) -> np.ndarray:
    """``x`` as a numpy array of a real numeric dtype with ``ndim`` dimensions (any if None)."""
    arr = _to_numpy(x, name)
    _check_numeric(arr, name)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"`{name}` must be a {ndim}-D array of shape "
            f"{'(N, C)' if ndim == 2 else '(N,)'}, got shape {arr.shape}"
        )
    return arr


def _format_scores(x, name: str, ndim: int | None = 2) -> np.ndarray:
    """Validate and return a finite ``float64`` array."""
    arr = _to_numeric_array(x, name, ndim)
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"`{name}` must contain only finite values; found {n_bad} NaN/inf value(s)"
        )
    return arr


def _format_targets(x, name: str = "targets", ndim: int | None = 2) -> np.ndarray:
    """Validate and return an ``int8`` array with values in {-1, 0, 1}."""
    arr = _to_numeric_array(x, name, ndim)
    ok = np.isin(arr, _VALID_TARGET_VALUES)
    if not np.all(ok):
        bad = np.unique(arr[~ok])
        shown = ", ".join(repr(v.item()) for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise ValueError(
            f"`{name}` must contain only {IGNORE} (IGNORE), 0 or 1; found invalid value(s) "
            f"[{shown}]"
        )
    return arr.astype(np.int8, copy=False)


def _format_top_k(top_k) -> tuple[int, ...]:
    if top_k is None:
        return ()
    if isinstance(top_k, (int, np.integer)):
        top_k = (top_k,)
    out = []
    for k in top_k:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"`top_k` must contain positive integers, got {k!r}")
        out.append(int(k))
    return tuple(out)


def _safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """Elementwise ``num / den`` with ``0`` where ``den == 0`` (zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _harmonic(p, r) -> np.ndarray:
    """:math:`2pr/(p+r)`, 0 when :math:`p + r = 0`."""
    return _safe_div(2.0 * np.asarray(p) * np.asarray(r), np.asarray(p) + np.asarray(r))


# ---------------------------------------------------------------------------
# average precision
# ---------------------------------------------------------------------------
def _binary_ap(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of already-validated 1-D ``scores`` and boolean ``positives`` (no IGNORE)."""
    n_pos = int(np.count_nonzero(positives))
    if n_pos == 0:
        return math.nan
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    tp_cum = np.cumsum(positives[order], dtype=np.int64)
    # index of the last element of every group of tied scores (= one threshold step)
    ends = np.flatnonzero(np.diff(s))
    ends = np.append(ends, s.size - 1)
    tp = tp_cum[ends]
    precision = tp / (ends + 1.0)
    d_tp = np.diff(tp, prepend=0)
    return float(np.dot(d_tp, precision) / n_pos)


def average_precision(scores, targets) -> float:
    r"""Average precision (AP) of one class, as a fraction in [0, 1].

    Entries whose target is :data:`IGNORE` are dropped first. Let the remaining scores be
    sorted in descending order and grouped into *distinct thresholds*
    :math:`t_1 > t_2 > \dots > t_m` (tied scores form one group). At threshold :math:`t_j`
    everything with score :math:`\ge t_j` is predicted positive, giving

    .. math::
        P_j = \frac{TP_j}{TP_j + FP_j}, \qquad R_j = \frac{TP_j}{n_{pos}}, \qquad
        AP = \sum_{j=1}^{m} (R_j - R_{j-1})\, P_j, \quad R_0 = 0.

    Without ties this is the mean, over the positives, of the precision at the rank of each
    positive. With ties, every positive of a tied group receives the precision at the *end*
    of its group (the tie is resolved pessimistically, as one threshold step); this is exactly
    ``sklearn.metrics.average_precision_score`` (non-interpolated, no trapezoid).

    Args:
        scores: 1-D array ``(N,)`` of finite real scores.
        targets: 1-D array ``(N,)`` with values in {-1 (IGNORE), 0, 1}.

    Returns:
        AP in [0, 1], or ``nan`` when no (non-ignored) positive exists.

    Example:
        >>> average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])  # (1/1 + 2/3) / 2
        0.8333333333333333
        >>> average_precision([0.9, 0.8, 0.7, 0.6], [1, IGNORE, 1, 0])  # the ignored entry is dropped
        1.0
    """
    s = _format_scores(scores, "scores", ndim=1)
    t = _format_targets(targets, "targets", ndim=1)
    if s.shape != t.shape:
        raise ValueError(
            f"`scores` and `targets` must have the same shape, got {s.shape} and {t.shape}"
        )
    valid = t != IGNORE
    return _binary_ap(s[valid], t[valid] == 1)


# ---------------------------------------------------------------------------
# multilabel metrics
# ---------------------------------------------------------------------------
class MultilabelMetrics:
    r"""Streaming multi-label metrics (accumulate batches with :meth:`update`, then
    :meth:`compute`).

    All counts are restricted to valid pairs :math:`V` (targets :math:`\neq` IGNORE).
    Every returned metric is a percentage in [0, 100] (python ``float``).

    **Ranking metrics** (use ``scores``):

    * ``ap_per_class[c]`` = :func:`average_precision` of column :math:`c` (``nan`` if the
      class has no valid positive).
    * ``mAP`` = mean of ``ap_per_class`` over the classes that have at least one positive.
      *Choice:* classes without positives are **excluded** (as torchmetrics does); the
      reference MLR code counts them as AP = 0 instead. ``n_classes_with_positives`` tells
      how many classes were averaged. ``mAP`` is ``nan`` if no class has a positive.

    **Threshold metrics**: a pair is predicted positive iff
    :math:`\hat y_{ic} = [p_{ic} \ge \tau]` with :math:`\tau` = ``threshold``, where
    :math:`p` are the ``probabilities`` if given to *every* :meth:`update` call, else the
    ``scores``. Per class :math:`TP_c = \sum_i \hat y_{ic} y_{ic}`,
    :math:`FP_c = \sum_i \hat y_{ic}(1-y_{ic})`, :math:`FN_c = \sum_i (1-\hat y_{ic}) y_{ic}`
    (sums over valid pairs), and with the convention :math:`x/0 = 0` (``zero_division=0``:
    a class with no predicted positive has precision 0, a class with no positive has recall
    0, and F1 is 0 when :math:`P+R=0`):

    .. math::
        P_c = \frac{TP_c}{TP_c+FP_c},\quad R_c = \frac{TP_c}{TP_c+FN_c},\quad
        F1_c = \frac{2P_cR_c}{P_c+R_c}

    * ``CP`` = :math:`\frac1C\sum_c P_c`, ``CR`` = :math:`\frac1C\sum_c R_c` (mean over
      **all** ``num_classes`` classes, as sklearn ``average='macro'``),
    * ``CF1`` = :math:`2\,CP\,CR/(CP+CR)` (harmonic mean of the means; Dassl definition),
    * ``CF1_mean_of_f1`` = :math:`\frac1C\sum_c F1_c` (mean of per-class F1; DualCoOp
      definition, = sklearn ``f1_score(average='macro')``),
    * ``OP`` = :math:`\sum_c TP_c / \sum_c (TP_c+FP_c)`, ``OR`` =
      :math:`\sum_c TP_c / \sum_c (TP_c+FN_c)`, ``OF1`` = :math:`2\,OP\,OR/(OP+OR)`
      (pooled over all pairs, = sklearn ``average='micro'``).

    **Top-k metrics** (use ``scores``; DualCoOp / zero-shot protocol): for every image the
    :math:`k` highest-scoring valid classes are predicted positive (``k`` is clamped to
    ``num_classes``; ties are broken in favour of the lower class index; IGNORE classes are
    never candidates, so an image with :math:`n_i < k` valid classes contributes only
    :math:`n_i` predictions). With :math:`\text{correct}` = number of top-k predictions
    whose target is 1,

    .. math::
        P@k = \frac{\text{correct}}{\sum_i \min(k, n_i)} \;(= \tfrac{\text{correct}}{Nk}
        \text{ without IGNORE}),\quad R@k = \frac{\text{correct}}{\#\text{positives}},\quad
        F1@k = \frac{2\,P@k\,R@k}{P@k+R@k}.

    Keys of :meth:`compute`: ``"mAP", "ap_per_class", "CP", "CR", "CF1",
    "CF1_mean_of_f1", "OP", "OR", "OF1"``, ``"P@k", "R@k", "F1@k"`` for each ``k`` in
    ``top_k`` (the key uses the requested ``k``, even when clamped), ``"threshold"``,
    ``"n_images"``, ``"n_classes_with_positives"``.

    Args:
        num_classes: number of classes ``C``.
        threshold: decision threshold :math:`\tau` (prediction positive iff value >= it); a scalar, or
            one per class (``C`` values, e.g. :func:`f1_thresholds` chosen on a validation split).
        top_k: iterable of positive ints (default ``(3, 5)``); ``()`` disables top-k.
    """

    def __init__(self, num_classes: int, threshold: float = 0.5, top_k: Iterable[int] = (3, 5)):
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
                or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}")
        if np.ndim(threshold) == 1:  # one per class
            threshold = np.asarray(threshold, dtype=np.float64)
            if threshold.shape != (int(num_classes),) or not np.isfinite(threshold).all():
                raise ValueError(f"per-class `threshold` must hold {num_classes} finite values, got {threshold!r}")
        else:
            try:
                threshold = float(threshold)
            except (TypeError, ValueError):
                raise ValueError(f"`threshold` must be a real number, got {threshold!r}") from None
            if not math.isfinite(threshold):
                raise ValueError(f"`threshold` must be finite, got {threshold!r}")
        self.num_classes = int(num_classes)
        self.threshold = threshold
        self.top_k = _format_top_k(top_k)
        self.reset()

    # -- state ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget every accumulated batch."""
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self._probabilities: list[np.ndarray] = []
        self._has_probabilities: bool | None = None  # fixed by the first update

    def _validate(self, scores, targets, probabilities):
        C = self.num_classes
        s = _format_scores(scores, "scores")
        t = _format_targets(targets, "targets")
        if s.shape[1] != C:
            raise ValueError(
                f"`scores` must have shape (N, {C}) (num_classes={C}), got {s.shape}"
            )
        if t.shape != s.shape:
            raise ValueError(
                f"`targets` must have the same shape as `scores` {s.shape}, got {t.shape}"
            )
        p = None
        if probabilities is not None:
            p = _format_scores(probabilities, "probabilities")
            if p.shape != s.shape:
                raise ValueError(
                    f"`probabilities` must have the same shape as `scores` {s.shape}, "
                    f"got {p.shape}"
                )
            if p.size and (p.min() < 0.0 or p.max() > 1.0):
                raise ValueError(
                    "`probabilities` must lie in [0, 1], got values in "
                    f"[{p.min():.4g}, {p.max():.4g}] (pass raw logits as `scores` instead)"
                )
        has_p = p is not None
        if self._has_probabilities is not None and has_p != self._has_probabilities:
            raise ValueError(
                "`probabilities` must be given either in every update() call or in none "
                f"(previous calls {'had' if self._has_probabilities else 'did not have'} them)"
            )
        return s, t, p

    def update(self, scores, targets, probabilities=None) -> None:
        """Validate one batch and add it to the state.

        Args:
            scores: ``(N, C)`` finite real scores (ranking: AP, top-k).
            targets: ``(N, C)`` with values in {-1 (IGNORE), 0, 1} (int, bool or float).
            probabilities: optional ``(N, C)`` values in [0, 1] used for the threshold
                metrics; must be passed in every call or in none.

        Raises:
            ValueError: on wrong shape / dtype, invalid target values, non-finite scores.
        """
        s, t, p = self._validate(scores, targets, probabilities)
        self._has_probabilities = p is not None
        self._scores.append(np.array(s, dtype=np.float64, copy=True))
        self._targets.append(np.array(t, dtype=np.int8, copy=True))
        if p is not None:
            self._probabilities.append(np.array(p, dtype=np.float64, copy=True))

    # -- compute -------------------------------------------------------------
    def compute(self) -> dict:
        """Compute every metric from the accumulated batches (see class docstring).

        Raises:
            RuntimeError: if :meth:`update` was never called.
        """
        if not self._scores:
            raise RuntimeError("MultilabelMetrics.compute() called before any update()")
        scores = np.concatenate(self._scores, axis=0)
        targets = np.concatenate(self._targets, axis=0)
        probs = np.concatenate(self._probabilities, axis=0) if self._has_probabilities else None
        n_images = scores.shape[0]
        valid = targets != IGNORE
        pos = targets == 1
        neg = targets == 0

        # ranking: per-class AP (columns made contiguous for the per-class sorts)
        s_cols = np.ascontiguousarray(scores.T)
        v_cols = np.ascontiguousarray(valid.T)
        p_cols = np.ascontiguousarray(pos.T)
        ap = np.full(self.num_classes, np.nan)
        for c in range(self.num_classes):
            v = v_cols[c]
            if p_cols[c].any():
                if v.all():
                    ap[c] = _binary_ap(s_cols[c], p_cols[c])
                else:
                    ap[c] = _binary_ap(s_cols[c][v], p_cols[c][v])
        has_pos = ~np.isnan(ap)
        n_with_pos = int(has_pos.sum())
        mAP = float(ap[has_pos].mean()) if n_with_pos else math.nan

        # threshold metrics
        values = probs if probs is not None else scores
        pred = values >= self.threshold
        tp = np.count_nonzero(pred & pos, axis=0)
        fp = np.count_nonzero(pred & neg, axis=0)
        fn = np.count_nonzero(~pred & pos, axis=0)
        p_c = _safe_div(tp, tp + fp)
        r_c = _safe_div(tp, tp + fn)
        CP, CR = float(p_c.mean()), float(r_c.mean())
        CF1 = float(_harmonic(CP, CR))
        CF1_mean = float(_harmonic(p_c, r_c).mean())
        TP, FP, FN = int(tp.sum()), int(fp.sum()), int(fn.sum())
        OP = float(_safe_div(TP, TP + FP))
        OR = float(_safe_div(TP, TP + FN))
        OF1 = float(_harmonic(OP, OR))

        out = {
            "mAP": 100.0 * mAP,
            "ap_per_class": [100.0 * float(a) for a in ap],
            "CP": 100.0 * CP,
            "CR": 100.0 * CR,
            "CF1": 100.0 * CF1,
            "CF1_mean_of_f1": 100.0 * CF1_mean,
            "OP": 100.0 * OP,
            "OR": 100.0 * OR,
            "OF1": 100.0 * OF1,
        }

        # top-k
        if self.top_k:
            out.update(self._top_k_metrics(scores, targets, valid))

        out["threshold"] = self.threshold.round(4).tolist() if isinstance(self.threshold, np.ndarray) else self.threshold
        out["n_images"] = int(n_images)
        out["n_classes_with_positives"] = n_with_pos
        return out

    def _top_k_metrics(self, scores, targets, valid) -> dict:
        C = self.num_classes
        k_max = min(max(self.top_k), C)
        ranked = np.where(valid, scores, -np.inf)  # IGNORE classes are ranked last
        # stable sort of -score: ties -> lower class index first
        order = np.argsort(-ranked, axis=1, kind="stable")[:, :k_max]
        hit = np.take_along_axis(targets, order, axis=1) == 1  # IGNORE (-1) never a hit
        correct_cum = np.cumsum(np.count_nonzero(hit, axis=0))  # correct within top-1..k_max
        n_valid = np.count_nonzero(valid, axis=1)
        n_pos = int(np.count_nonzero(targets == 1))
        out = {}
        for k_req in self.top_k:
            k = min(k_req, C)
            correct = int(correct_cum[k - 1]) if scores.shape[0] else 0
            n_pred = int(np.minimum(n_valid, k).sum())
            P = float(_safe_div(correct, n_pred))
            R = float(_safe_div(correct, n_pos))
            out[f"P@{k_req}"] = 100.0 * P
            out[f"R@{k_req}"] = 100.0 * R
            out[f"F1@{k_req}"] = 100.0 * float(_harmonic(P, R))
        return out

    def __repr__(self) -> str:
        n = sum(s.shape[0] for s in self._scores)
        return (f"{type(self).__name__}(num_classes={self.num_classes}, "
                f"threshold={self.threshold}, top_k={self.top_k}, n_images={n})")


def f1_thresholds(probabilities, targets, default: float) -> np.ndarray:
    r"""Per-class decision thresholds that maximise each class's F1 on (validation) data.

    For class :math:`c` the candidates are its distinct valid probabilities :math:`t`; predicting
    :math:`[p_{ic} \ge t]` gives :math:`F1_c(t)`, and the threshold is the candidate of the highest F1 (the
    highest such :math:`t` on ties, the most conservative). A class without a valid positive keeps ``default``.

    Example:
        >>> f1_thresholds([[0.9, 0.2], [0.6, 0.1], [0.3, 0.4]], [[1, 0], [1, 0], [0, 0]], default=0.5).tolist()
        [0.6, 0.5]
    """
    p = _to_numpy(probabilities, "probabilities").astype(np.float64)
    y = _to_numpy(targets, "targets")
    if p.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"`probabilities` and `targets` must be (N, C) alike, got {p.shape} and {y.shape}")
    out = np.full(p.shape[1], float(default))
    for c in range(p.shape[1]):
        valid = y[:, c] != IGNORE
        pc, yc = p[valid, c], y[valid, c] == 1
        if not yc.any():
            continue
        order = np.argsort(-pc, kind="stable")
        ps, ys = pc[order], yc[order]
        tp = np.cumsum(ys)
        ends = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]  # last index of each group of tied values
        f1 = 2 * tp[ends] / (ends + 1 + yc.sum())
        out[c] = ps[ends][int(np.argmax(f1))]  # argmax takes the first = highest threshold of the best F1
    return out


def multilabel_metrics(scores, targets, probabilities=None, threshold: float = 0.5,
                       top_k: Sequence[int] = (3, 5)) -> dict:
    """One-shot convenience wrapper around :class:`MultilabelMetrics`.

    ``num_classes`` is taken from ``scores.shape[1]``; see :class:`MultilabelMetrics`
    for the definitions and the returned keys.
    """
    s = _format_scores(scores, "scores")
    m = MultilabelMetrics(num_classes=s.shape[1], threshold=threshold, top_k=top_k)
    m.update(s, targets, probabilities)
    return m.compute()


# ---------------------------------------------------------------------------
# precision-recall curve
# ---------------------------------------------------------------------------
def precision_recall_curve_points(scores, targets, max_points: int = 200) -> list[dict]:
    r"""Micro-averaged precision-recall curve, for a DVC plot.

    All non-ignored (image, class) pairs are pooled into one binary problem. For every
    distinct score threshold :math:`t` (descending), predicting positive iff score
    :math:`\ge t` gives :math:`P(t) = TP/(TP+FP)` and :math:`R(t) = TP/n_{pos}` (same
    points as ``sklearn.metrics.precision_recall_curve`` without its artificial final
    ``(R=0, P=1)`` point). The curve is downsampled to at most ``max_points`` points,
    evenly spaced in threshold rank and always keeping the first and last ones.

    Args:
        scores: ``(N, C)`` (or 1-D) finite scores.
        targets: same shape, values in {-1 (IGNORE), 0, 1}.
        max_points: maximum number of returned points (>= 2).

    Returns:
        ``[{"recall": r, "precision": p, "threshold": t}, ...]`` as fractions in [0, 1]
        (not percent), ordered by decreasing threshold (increasing recall). Empty list if
        there is no positive (recall undefined).
    """
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) \
            or max_points < 2:
        raise ValueError(f"`max_points` must be an integer >= 2, got {max_points!r}")
    s = _format_scores(scores, "scores", ndim=None)
    t = _format_targets(targets, "targets", ndim=None)
    if s.shape != t.shape:
        raise ValueError(
            f"`scores` and `targets` must have the same shape, got {s.shape} and {t.shape}"
        )
    s, t = s.ravel(), t.ravel()
    valid = t != IGNORE
    s, y = s[valid], t[valid] == 1
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        return []
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ends = np.append(np.flatnonzero(np.diff(s)), s.size - 1)
    tp = np.cumsum(y, dtype=np.int64)[ends]
    precision = tp / (ends + 1.0)
    recall = tp / float(n_pos)
    thresholds = s[ends]
    n = ends.size
    if n > max_points:
        idx = np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.int64))
    else:
        idx = np.arange(n)
    return [
        {"recall": float(recall[i]), "precision": float(precision[i]),
         "threshold": float(thresholds[i])}
        for i in idx
    ]


# ---------------------------------------------------------------------------
# zero-shot protocols (DualCoOp / LESA / BiAM)
# ---------------------------------------------------------------------------
def zero_shot_metrics(scores, targets, unseen: Sequence[int], seen: Sequence[int], top_k: Sequence[int] = (3, 5),
                      zsl_images: str = "with_unseen") -> dict:
    r"""ZSL and GZSL metrics of a seen/unseen class split.

    * **ZSL**: scores and targets restricted to the ``unseen`` class columns; with
      ``zsl_images="with_unseen"`` only images with at least one unseen positive are kept (the usual
      protocol: the others have nothing to find), ``"all"`` keeps every image.
    * **GZSL**: every image, the ``seen`` + ``unseen`` columns (classes outside the split, e.g. the 15
      unused classes of the COCO 48/17 split, are left out).

    Each part holds :class:`MultilabelMetrics`' ``mAP`` and ``P@k``, ``R@k``, ``F1@k`` (percent) plus
    ``n_images`` and ``n_classes``.
    """
    if zsl_images not in ("with_unseen", "all"):
        raise ValueError(f"`zsl_images` must be 'with_unseen' or 'all', got {zsl_images!r}")
    s = _format_scores(scores, "scores")
    t = _format_targets(targets, "targets")
    unseen, seen = list(unseen), list(seen)
    if not unseen or set(unseen) & set(seen):
        raise ValueError("`unseen` must be non-empty and disjoint from `seen`")
    keys = ["mAP", *(f"{m}@{k}" for k in top_k for m in ("P", "R", "F1")), "n_images"]

    def part(cols, rows) -> dict:
        m = multilabel_metrics(s[np.ix_(rows, cols)], t[np.ix_(rows, cols)], top_k=top_k)
        return {**{k: m[k] for k in keys}, "n_classes": len(cols)}

    rows_zsl = (np.flatnonzero((t[:, unseen] == 1).any(1)) if zsl_images == "with_unseen"
                else np.arange(len(t)))
    return {"ZSL": part(unseen, rows_zsl), "GZSL": part(seen + unseen, np.arange(len(t)))}
