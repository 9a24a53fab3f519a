r"""SPARC (Miller et al., CVPR 2025, "Score Prompting and Adaptive Fusion"): a training-free refiner of any
method's class scores, from the scores of compound prompts that name co-occurring classes.

Inputs, for N images and C classes: the base scores :math:`E` (N, C) (any method's saved test scores), the
bare-class-name cosines :math:`S` (N, C) (the prompt ``"{class}"``) and the cosines :math:`P` (N, K) of K
compound prompts (``"a X and a Y"``, ``"X, Y and Z"``), each naming a set of classes.

1. **Per image** (over its classes; sample std, ddof 1, as the reference code):
   :math:`\tilde E_{ic} = (E_{ic} - \mu_i(E)) / \sigma_i(E)` and, with the image's *bare-name* statistics,
   :math:`\tilde P_{ik} = (P_{ik} - \mu_i(S)) / \sigma_i(S)`.
2. **Across images** (per column, ddof 1): :math:`\hat X_{ic} = (\tilde X_{ic} - m_c) / s_c` for the columns of
   :math:`\tilde E` and of :math:`\tilde P`; ``m``, ``s`` come from the evaluated images themselves
   (transductive) or from an unlabelled reference set (``reference=``: e.g. trainval images, labels unread).
3. **Fusion, per class** c with compounds :math:`K_c` (the prompts that name c): the row
   :math:`z_i = [\mathrm{sort}(\hat P_{i, K_c}), \hat E_{ic}]` (compound scores sorted ascending per image,
   then the base score); :math:`u_c` = the first principal direction of the :math:`z_i` (of the evaluated or
   the reference images), its sign such that :math:`\mathrm{mean}(u_c) > 0`, scaled to
   :math:`\|u_c\|_1 = 1`; fused :math:`f_{ic} = z_i \cdot u_c` (no centring: a constant per class). A class
   without compounds keeps :math:`f_{ic} = \hat E_{ic}`.
4. Output :math:`r_{ic} = w f_{ic} + (1 - w) \hat E_{ic}` (w = 0.5).

Steps 1, 2 and 3 can each be switched off (:class:`SparcConfig`; the ablations of :data:`VARIANTS`): without
step 1 the raw scores go to step 2, without step 2 the step-1 scores go to step 3, without step 3 the
output is the standardised base score. The transductive and the reference-set forms differ only in which
images steps 2 and 3 take their statistics from (:func:`fit_statistics`).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> E, S, P = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    >>> members = [(0, 1), (1, 2)]             # prompt 0 names classes 0 and 1, prompt 1 names 1 and 2
    >>> out = sparc(E, S, P, members, SparcConfig())
    >>> out.shape, bool(np.allclose(sparc(E, S, P, members, SparcConfig(), reference=(E, S, P)), out))
    ((6, 3), True)
    >>> only_base = sparc(E, S, P, members, SparcConfig(compounds=False))
    >>> bool(np.allclose(only_base.std(axis=0, ddof=1), 1.0))  # standardised per column
    True
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

# The ablations: which of the three steps run ("all" is the method itself).
VARIANTS: dict[str, dict] = {
    "all": {},
    "per_image": {"across_image": False, "compounds": False},
    "across_image": {"per_image": False, "compounds": False},
    "standardise": {"compounds": False},
    "compounds": {"per_image": False, "across_image": False},
}


@dataclass(frozen=True)
class SparcConfig:
    per_image: bool = True       # step 1
    across_image: bool = True    # step 2
    compounds: bool = True       # step 3
    fusion_weight: float = 0.5   # w of step 4

    def variant(self, name: str) -> "SparcConfig":
        if name not in VARIANTS:
            raise ValueError(f"unknown SPARC variant {name!r}; known: {', '.join(VARIANTS)}")
        return replace(self, **VARIANTS[name])


def standardise_rows(x: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """Each row of ``x`` minus the mean of the same row of ``like`` (default ``x``), over its std (ddof 1)."""
    like = x if like is None else like
    return (x - like.mean(axis=1, keepdims=True)) / like.std(axis=1, ddof=1, keepdims=True)


def column_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (ddof 1) over the rows (images)."""
    return x.mean(axis=0), x.std(axis=0, ddof=1)


def pca_direction(z: np.ndarray) -> np.ndarray:
    """The first principal direction of the rows of ``z`` (centred), sign with a positive mean, unit L1 norm."""
    centred = z - z.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    u = vt[0]
    if u.mean() < 0:
        u = -u
    return u / np.abs(u).sum()


def class_compounds(members: Sequence[Sequence[int]], n_classes: int) -> list[np.ndarray]:
    """For each class, the indices of the compound prompts that name it."""
    out = [[] for _ in range(n_classes)]
    for k, classes in enumerate(members):
        for c in set(classes):
            out[c].append(k)
    return [np.asarray(k, dtype=np.int64) for k in out]


def _fusion_rows(e_hat: np.ndarray, p_hat: np.ndarray, compounds: np.ndarray, c: int) -> np.ndarray:
    """(N, |K_c| + 1): the class's compound scores sorted per image, then its base score."""
    return np.concatenate([np.sort(p_hat[:, compounds], axis=1), e_hat[:, c:c + 1]], axis=1)


def _per_image(E, S, P, cfg: SparcConfig):
    if not cfg.per_image:
        return E, P
    return standardise_rows(E), standardise_rows(P, like=S)


@dataclass(frozen=True)
class SparcStatistics:
    """What SPARC takes from a set of images: the column statistics of steps 2 and the directions of step 3."""
    e_mean: np.ndarray
    e_std: np.ndarray
    p_mean: np.ndarray
    p_std: np.ndarray
    directions: tuple           # per class: (|K_c| + 1,) or None (no compounds, or step 3 off)


def fit_statistics(E, S, P, members, cfg: SparcConfig) -> SparcStatistics:
    """Steps 2 and 3's statistics from the images of (E, S, P): the evaluated images (transductive) or a
    reference set. No label is read."""
    E, P = _per_image(np.asarray(E, np.float64), np.asarray(S, np.float64), np.asarray(P, np.float64), cfg)
    C, K = E.shape[1], P.shape[1]
    if cfg.across_image:
        (em, es), (pm, ps) = column_statistics(E), column_statistics(P)
    else:
        em, es, pm, ps = np.zeros(C), np.ones(C), np.zeros(K), np.ones(K)
    e_hat, p_hat = (E - em) / es, (P - pm) / ps
    directions = []
    for c, k in enumerate(class_compounds(members, C)):
        directions.append(pca_direction(_fusion_rows(e_hat, p_hat, k, c)) if cfg.compounds and len(k) else None)
    return SparcStatistics(em, es, pm, ps, tuple(directions))


def apply_statistics(E, S, P, members, stats: SparcStatistics, cfg: SparcConfig) -> np.ndarray:
    """Steps 1-4 on (E, S, P) with steps 2 and 3's statistics ``stats`` -> (N, C) refined scores."""
    E, P = _per_image(np.asarray(E, np.float64), np.asarray(S, np.float64), np.asarray(P, np.float64), cfg)
    e_hat, p_hat = (E - stats.e_mean) / stats.e_std, (P - stats.p_mean) / stats.p_std
    out = e_hat.copy()
    for c, k in enumerate(class_compounds(members, E.shape[1])):
        u = stats.directions[c]
        if u is not None:
            out[:, c] = cfg.fusion_weight * (_fusion_rows(e_hat, p_hat, k, c) @ u) + (1 - cfg.fusion_weight) * e_hat[:, c]
    return out


def sparc(E, S, P, members, cfg: SparcConfig, reference: tuple | None = None) -> np.ndarray:
    """SPARC's refined scores of (E, S, P); ``reference`` = (E, S, P) of an unlabelled reference set whose
    across-image statistics are used (None: the evaluated images' own, the transductive form)."""
    stats = fit_statistics(*(reference if reference is not None else (E, S, P)), members, cfg)
    return apply_statistics(E, S, P, members, stats, cfg)


# ------------------------------------------------------------------ compound prompts from co-occurrence
def cooccurring_sets(labels: np.ndarray, size: int, per_class: int) -> list[tuple[int, ...]]:
    """Class sets of ``size`` (2: pairs, 3: triples) that co-occur in the rows of ``labels`` (text labelled by
    the noun filter; no image label), for each class its ``per_class`` most frequent (ties: by class index),
    deduplicated, in a fixed order."""
    import itertools

    pos = labels > 0
    C = pos.shape[1]
    counts: dict[tuple[int, ...], int] = {}
    for row in pos:
        present = np.flatnonzero(row)
        for combo in itertools.combinations(present.tolist(), size):
            counts[combo] = counts.get(combo, 0) + 1
    chosen: set[tuple[int, ...]] = set()
    for c in range(C):
        mine = sorted((s for s in counts if c in s), key=lambda s: (-counts[s], s))
        chosen.update(mine[:per_class])
    return sorted(chosen)


def compound_prompts(labels: np.ndarray, classes: list[str], *, pairs_per_class: int, triples_per_class: int,
                     pair_template: str, triple_template: str) -> tuple[list[str], list[tuple[int, ...]]]:
    """The compound prompts and the classes each names: the co-occurring pairs and triples of
    :func:`cooccurring_sets` written with the templates.

    Example:
        >>> labels = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]])
        >>> compound_prompts(labels, ["cat", "dog", "cup"], pairs_per_class=1, triples_per_class=1,
        ...                  pair_template="a {} and a {}", triple_template="{}, {} and {}")
        (['a cat and a dog', 'a dog and a cup', 'cat, dog and cup'], [(0, 1), (1, 2), (0, 1, 2)])
    """
    members = cooccurring_sets(labels, 2, pairs_per_class) + cooccurring_sets(labels, 3, triples_per_class)
    templates = {2: pair_template, 3: triple_template}
    return [templates[len(m)].format(*(classes[c] for c in m)) for m in members], members


def build_refiner(params):
    """The stage's SPARC settings from ``refine.sparc`` (fusion weight)."""
    return SparcConfig(fusion_weight=params.refine.sparc.fusion_weight)
