"""Class hierarchies for the data-free method's partial-shared prompt tokens, and their fallbacks.

The data-free method (:mod:`mlr_core.methods.datafree`) gives the classes of one subgroup shared
prompt tokens, at two levels (coarse, fine). The subgroups come from the LLM (``data/llm/subgroups.json``:
``{"coarse": [{"name": ..., "classes": [...]}, ...], "fine": [...]}``); a small LLM often returns a
grouping that is no use (one group of two classes out of twenty, or none). This module says when a
level is usable (:func:`usable`) and gives two other sources of groups:

* :func:`wordnet_groups`: the classes' WordNet hypernyms, cut into about ``n_groups`` groups, each named
  by its common hypernym (:func:`wordnet_subgroups` gives the names too);
* :func:`embedding_groups`: average-linkage clustering of the classes' text embeddings.

:func:`resolve_hierarchy` picks, per level, the source asked for, or with ``"auto"`` the first usable of
LLM, WordNet and embeddings. Every group is a list of class names in the order of ``classes``, groups in
the order of their first class: the format :func:`mlr_core.methods.datafree.group_index` reads. A class
in no group gets its own tokens at that level.

Only numpy is imported with this module; NLTK (and its WordNet, from the project's ``.nltk_data/``, see
:mod:`mlr_core.text.nltk_data`; never downloaded here) is loaded on the first WordNet call.
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Sequence

import numpy as np

SOURCES: tuple[str, ...] = ("auto", "llm", "wordnet", "embedding")
LEVEL_NAMES: tuple[str, ...] = ("coarse", "fine")  # the keys of the LLM's subgroups file, level by level

# Hypernyms shallower than this (entity 0; physical_entity, abstraction 1; object, attribute, matter,
# causal_agent, ... 2) say nothing about the classes under them: no group is formed at them.
WORDNET_MIN_DEPTH = 3


# ------------------------------------------------------------------------------------------------ usable
def usable(groups: Sequence[Sequence[str]], classes: Sequence[str], min_groups: int = 2,
           min_coverage: float = 0.5) -> bool:
    """Whether one level of subgroups is worth using for partial-shared tokens.

    A level is usable when it has at least ``min_groups`` groups of two or more distinct member classes
    and those groups together cover at least ``min_coverage`` of ``classes``. Members that are not in
    ``classes`` count for nothing; a group left with fewer than two known classes does not count.

    Args:
        groups: the level's groups, each a list of class names.
        classes: all class names.
        min_groups: groups of >= 2 classes needed.
        min_coverage: fraction of the classes that those groups must cover, in [0, 1].

    Example:
        >>> classes = ["cat", "dog", "car", "bus", "tree"]
        >>> usable([["cat", "dog"], ["car", "bus"]], classes)
        True
        >>> usable([["cat", "dog"]], classes)  # one group: too few
        False
        >>> usable([["cat", "dog"], ["car", "bus"]], classes, min_coverage=0.9)  # 4/5 covered
        False
        >>> usable([["cat"], ["car", "bus"], ["dog", "lion"]], classes)  # "lion" is no class
        False
    """
    known = set(classes)
    if not known:
        return False
    covered: set[str] = set()
    n_groups = 0
    for group in groups:
        members = {name for name in group if name in known}
        if len(members) >= 2:
            n_groups += 1
            covered |= members
    return n_groups >= min_groups and len(covered) >= min_coverage * len(known)


# ----------------------------------------------------------------------------------------------- WordNet
def _wordnet():
    """NLTK's WordNet reader (the same object :class:`mlr_core.text.tagging.NltkTools` holds), from the
    project's NLTK data folder put on the path by :func:`mlr_core.text.nltk_data.ensure_nltk_data_path`;
    only WordNet is needed (not the tagger or tokenizer). RuntimeError naming the provisioning command
    if it is missing; never downloads."""
    from mlr_core.text import nltk_data

    try:
        import nltk  # noqa: F401
    except ImportError as e:
        raise RuntimeError("WordNet groups need NLTK: install it with `pip install 'nltk>=3.9,<4'` "
                           f"(it is in pyproject.toml), then run `{nltk_data.PROVISION_COMMAND}`.") from e
    folder = nltk_data.ensure_nltk_data_path()
    if nltk_data.RESOURCE_BY_NAME["wordnet"] in nltk_data.missing_resources():
        res = nltk_data.RESOURCE_BY_NAME["wordnet"]
        raise RuntimeError(f"NLTK data missing: wordnet ({res.path}/). Provision it with "
                           f"`{nltk_data.PROVISION_COMMAND}` (run from the repo root, in the project venv; "
                           f"writes {folder}).")
    from nltk.corpus import wordnet

    wordnet.ensure_loaded()
    return wordnet


def _first_noun(wn, lemma: str):
    found = wn.synsets(lemma, pos="n") if lemma else []
    return found[0] if found else None


def class_synset(name: str, wn=None):
    """The WordNet noun synset that stands for a class name, or None.

    The first noun sense of, in turn: the name with its words joined by underscores (``"traffic light"``
    -> ``traffic_light``; WordNet's own morphology maps plurals, ``"skis"`` -> ``ski``); a multi-word name
    written as one word (``"wine glass"`` -> ``wineglass``); a one-word name split into a WordNet compound
    (VOC's ``"diningtable"`` -> ``dining_table``, first split from the left); the head noun: the last
    word of a multi-word name (``"stop sign"`` -> ``sign``), or the longest suffix of at least 3 letters
    of a one-word name that is a noun (``"pottedplant"`` -> ``plant``).
    """
    wn = wn if wn is not None else _wordnet()
    words = [w for w in re.split(r"[\s_\-]+", name.strip().lower()) if w]
    if not words:
        return None
    found = _first_noun(wn, "_".join(words))
    if found is None and len(words) > 1:
        found = _first_noun(wn, "".join(words))
    if found is None and len(words) == 1:
        word = words[0]
        for i in range(2, len(word) - 1):
            found = _first_noun(wn, f"{word[:i]}_{word[i:]}")
            if found is not None:
                break
        else:
            found = next((s for s in (_first_noun(wn, word[i:]) for i in range(1, len(word) - 2)) if s), None)
    if found is None and len(words) > 1:
        found = _first_noun(wn, words[-1])
    return found


def _lemma(synset) -> str:
    return synset.lemma_names()[0].replace("_", " ")


def wordnet_subgroups(classes: Sequence[str], n_groups: int, *,
                      min_depth: int = WORDNET_MIN_DEPTH) -> list[dict[str, Any]]:
    """:func:`wordnet_groups` with names: ``[{"name": common hypernym's lemma, "classes": [...]}, ...]``
    (the LLM's subgroups format)."""
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError("class names must be distinct")
    wn = _wordnet()
    order = {c: i for i, c in enumerate(classes)}
    # A node of the dendrogram: its classes, the hypernyms they all share (a class's hypernyms: every
    # synset on any of its hypernym paths, its own synset included), the synset that named the merge
    # (None for a class) and the nodes merged into it.
    Node = tuple  # (members: frozenset[str], hyper: frozenset, synset | None, children: tuple[Node, ...])
    forest: list[Node] = []
    for c in sorted(classes):
        s = class_synset(c, wn)
        if s is not None:
            forest.append((frozenset([c]), frozenset(h for path in s.hypernym_paths() for h in path), None, ()))
    depth: dict[Any, int] = {}

    def depth_of(h) -> int:
        if h not in depth:
            depth[h] = h.max_depth()
        return depth[h]

    # Bottom up: the deepest hypernym shared by two or more clusters merges every cluster under it.
    while True:
        shared: dict[Any, int] = {}
        for node in forest:
            for h in node[1]:
                shared[h] = shared.get(h, 0) + 1
        candidates = [h for h, n in shared.items() if n >= 2 and depth_of(h) >= min_depth]
        if not candidates:
            break
        best = min(candidates, key=lambda h: (-depth_of(h), h.name()))
        into = tuple(sorted((node for node in forest if best in node[1]), key=lambda node: sorted(node[0])))
        merged = (frozenset().union(*(node[0] for node in into)), frozenset.intersection(*(node[1] for node in into)),
                  best, into)
        forest = [node for node in forest if best not in node[1]] + [merged]

    # Top down: split the biggest group (ties: the shallowest hypernym, then its name) into what merged
    # into it, again and again; classes left alone leave the groups.
    def groups_of(state: list[Node]) -> list[Node]:
        return [node for node in state if node[3]]

    # The cut: the first partition with n_groups groups or more, or the one before it if that is nearer
    # (ties: the one before, coarser); if none has as many, the first with the most groups.
    state = groups_of(forest)
    chosen = state
    while len(state) < n_groups:
        if not state:
            break
        split = min(state, key=lambda node: (-len(node[0]), depth_of(node[2]), node[2].name(), sorted(node[0])))
        before, state = state, groups_of([node for node in state if node is not split] + list(split[3]))
        if len(state) > len(chosen):
            chosen = state
        if len(state) >= n_groups:
            chosen = before if n_groups - len(before) <= len(state) - n_groups else state
    out = [{"name": _lemma(node[2]), "classes": sorted(node[0], key=order.__getitem__)} for node in chosen]
    return sorted(out, key=lambda g: order[g["classes"][0]])


def wordnet_groups(classes: Sequence[str], n_groups: int, *, min_depth: int = WORDNET_MIN_DEPTH) -> list[list[str]]:
    """About ``n_groups`` groups of classes that share a WordNet hypernym.

    The rule:

    1. each class name becomes a noun synset (:func:`class_synset`: first noun sense; multi-word names
       with underscores; else the head noun); a class with none stays in no group;
    2. its hypernyms are all synsets on all its hypernym paths to the root;
    3. bottom up, a dendrogram: the deepest hypernym (``max_depth``; ties by synset name) shared by two
       or more clusters merges every cluster under it, named by that hypernym's first lemma; no merge
       happens at hypernyms shallower than ``min_depth`` (entity, physical entity, abstraction, object,
       attribute, ...);
    4. top down, the cut: from the dendrogram's roots, the biggest group (ties: the shallowest hypernym,
       then its name) is split into the clusters that merged into it, over and over; single classes
       leave the groups. The answer: the first partition on the way with at least ``n_groups`` groups,
       or the one before it where that one is nearer (ties: the one before); where no partition has
       that many, the first with the most groups.

    Deterministic and independent of the order of ``classes``, which only orders the output (members in
    class order, groups by their first member). Needs WordNet in the project's NLTK data folder
    (``python -m mlr_core.text.nltk_data``); never downloads.

    Args:
        classes: class names (may be multi-word: ``"traffic light"``).
        n_groups: groups wanted; fewer come back where the hierarchy has fewer.
        min_depth: shallowest hypernym depth at which classes are grouped.
    """
    return [g["classes"] for g in wordnet_subgroups(classes, n_groups, min_depth=min_depth)]


# -------------------------------------------------------------------------------------------- embeddings
def embedding_groups(class_features: np.ndarray, classes: Sequence[str], n_groups: int) -> list[list[str]]:
    """Clusters of the classes' text embeddings: average linkage on cosine distance, cut at ``n_groups``.

    Agglomerative clustering from one cluster per class: each step merges the two clusters with the
    smallest mean pairwise cosine distance (``1 - cos``; ties: the pair with the lowest indices) until
    ``n_groups`` clusters remain. Clusters of one class are dropped (that class gets its own tokens
    anyway), so fewer than ``n_groups`` groups can come back. Deterministic; numpy only.

    Args:
        class_features: ``(C, D)`` text embeddings, one row per class (need not be normalised).
        classes: the ``C`` class names.
        n_groups: clusters to cut the dendrogram into (clipped to ``C``).

    Example:
        >>> feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.1]])
        >>> embedding_groups(feats, ["cat", "dog", "car", "bus", "moon"], 3)
        [['cat', 'dog'], ['car', 'bus']]
    """
    x = np.asarray(class_features, dtype=np.float64)
    classes = list(classes)
    if x.ndim != 2 or x.shape[0] != len(classes):
        raise ValueError(f"class_features must be (C, D) with C = {len(classes)} classes, got {x.shape}")
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or np.any(norms == 0):
        raise ValueError("class_features has a zero or non-finite row: no cosine distance")
    x = x / norms
    n = len(classes)
    dist = 1.0 - np.clip(x @ x.T, -1.0, 1.0)
    dist = (dist + dist.T) / 2
    np.fill_diagonal(dist, np.inf)
    members: dict[int, list[int]] = {i: [i] for i in range(n)}  # cluster id = its lowest class index
    alive = np.ones(n, dtype=bool)
    while len(members) > min(n_groups, n):
        masked = np.where(alive[:, None] & alive[None, :], dist, np.inf)
        flat = int(np.argmin(masked))  # row-major: the first minimum is the pair with the lowest indices
        i, j = sorted(divmod(flat, n))
        ni, nj = len(members[i]), len(members[j])
        merged = (ni * dist[i] + nj * dist[j]) / (ni + nj)  # average linkage (Lance-Williams)
        dist[i, :] = merged
        dist[:, i] = merged
        dist[i, i] = np.inf
        alive[j] = False
        members[i] = sorted(members[i] + members.pop(j))
    groups = [[classes[k] for k in m] for _, m in sorted(members.items()) if len(m) >= 2]
    return groups


# --------------------------------------------------------------------------------------------- resolving
def resolve_hierarchy(classes: Sequence[str], *, source: str, llm_subgroups: dict | None,
                      n_groups: tuple[int, ...], class_features: np.ndarray | None = None,
                      ) -> tuple[list[list[list[str]]], list[str]]:
    """Per level (coarse, fine, ...) the groups to share partial tokens over, and the source of each.

    ``n_groups[l]`` is the number of groups wanted at level ``l`` (for WordNet and embeddings; the LLM's
    levels are taken as they are). ``source``:

    * ``"llm"``: the LLM's level (``llm_subgroups["coarse"]``, ``["fine"]``), as it is;
    * ``"wordnet"``: :func:`wordnet_groups`;
    * ``"embedding"``: :func:`embedding_groups` of ``class_features``;
    * ``"auto"``: per level, the LLM's groups if :func:`usable`, else WordNet's if usable, else the
      embeddings'. Where a source cannot be had (no LLM file, WordNet data missing, no features) it is
      skipped; when no embeddings are given and nothing is usable, WordNet's groups are used anyway
      (or the LLM's if WordNet is missing); with no source at all the level has no groups (``"none"``).

    Returns ``(groups, used)``: ``groups[l]`` the level's groups (lists of class names), ``used[l]``
    the source that gave them (``"llm"``, ``"wordnet"``, ``"embedding"``; ``"none"``, see above).

    Raises:
        ValueError: an unknown ``source`` (the message lists the valid ones), or an explicit source that
            cannot be produced (no ``llm_subgroups`` or no such level in it, WordNet data missing, no
            ``class_features``); the message names the source.

    Example:
        >>> classes = ["cat", "dog", "car", "bus"]
        >>> llm = {"coarse": [{"name": "pets", "classes": ["cat", "dog"]},
        ...                   {"name": "road", "classes": ["car", "bus"]}], "fine": []}
        >>> resolve_hierarchy(classes, source="llm", llm_subgroups=llm, n_groups=(2, 2))
        ([[['cat', 'dog'], ['car', 'bus']], []], ['llm', 'llm'])
        >>> feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> resolve_hierarchy(classes, source="embedding", llm_subgroups=None, n_groups=(2,), class_features=feats)
        ([[['cat', 'dog'], ['car', 'bus']]], ['embedding'])
        >>> resolve_hierarchy(classes, source="bert", llm_subgroups=None, n_groups=(2,))
        Traceback (most recent call last):
        ...
        ValueError: unknown hierarchy source 'bert'; valid sources: auto, llm, wordnet, embedding
    """
    if source not in SOURCES:
        raise ValueError(f"unknown hierarchy source {source!r}; valid sources: {', '.join(SOURCES)}")
    classes = list(classes)

    def llm_level(level: int) -> list[list[str]]:
        if llm_subgroups is None:
            raise ValueError("hierarchy source 'llm': no LLM subgroups were given")
        key = LEVEL_NAMES[level] if level < len(LEVEL_NAMES) else None
        if key is None or key not in llm_subgroups:
            raise ValueError(f"hierarchy source 'llm': the LLM subgroups have no level {level} "
                             f"({key or 'beyond ' + '/'.join(LEVEL_NAMES)}); they have {sorted(llm_subgroups)}")
        return [list(g["classes"]) for g in llm_subgroups[key]]

    def wordnet_level(level: int) -> list[list[str]]:
        try:
            return wordnet_groups(classes, n_groups[level])
        except RuntimeError as e:  # WordNet data or NLTK missing
            raise ValueError(f"hierarchy source 'wordnet': {e}") from e

    def embedding_level(level: int) -> list[list[str]]:
        if class_features is None:
            raise ValueError("hierarchy source 'embedding' needs class_features (the classes' text embeddings)")
        return embedding_groups(class_features, classes, n_groups[level])

    make = {"llm": llm_level, "wordnet": wordnet_level, "embedding": embedding_level}
    groups: list[list[list[str]]] = []
    used: list[str] = []
    for level in range(len(n_groups)):
        if source != "auto":
            groups.append(make[source](level))
            used.append(source)
            continue
        tried: list[tuple[str, list[list[str]]]] = []
        for name in ("llm", "wordnet", "embedding"):
            try:
                got = make[name](level)
            except ValueError as e:
                if name == "wordnet":
                    warnings.warn(f"hierarchy 'auto', level {level}: WordNet skipped ({e})", stacklevel=2)
                continue
            tried.append((name, got))
            if name == "embedding" or usable(got, classes):
                break
        if not tried:  # no LLM file, no WordNet, no features: every class keeps its own tokens
            groups.append([])
            used.append("none")
            continue
        name, got = tried[-1]  # the usable one, else the last that could be had
        groups.append(got)
        used.append(name)
    return groups, used
