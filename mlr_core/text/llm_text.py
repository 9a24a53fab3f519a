"""Training text from an LLM, for the data-free method (Yang et al., Sec. 3): no images, no captions.

The questions (editable templates, ``questions/datafree.yaml``) are asked in three batched rounds, each
round's questions built from the answers of the one before:

1. attributes common to all classes (Pi_1), attributes of each class (Pi_1), and two groupings of the
   classes into scene subgroups, coarse and fine (Pi_4);
2. sentences about each class from the angle of ``attributes_per_class`` of its attributes (Pi_2: the
   *coarse* attribute descriptions), the question that removes a class's irrelevant attributes (Pi_3), and
   sentences about scenes with two classes of a coarse subgroup (Pi_5: *relationship* descriptions);
3. sentences from the angle of the remaining (fine-grained) attributes (Pi_2 again: *fine* descriptions).

Replies are parsed robustly (numbered lists, bullets, tables, JSON, "group: a, b" lines, stray preambles);
an unusable reply is asked again with the next seed up to ``max_retries`` times and then counted, never
fatal. Every sentence is labelled by the same noun filter as mined captions (a sentence that names no
class as a noun is dropped and counted), so an answer about a "ring" that also mentions a "star" is a
two-label sample, as a caption would be.
"""
from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import yaml

from mlr_core.text.llm import ChatRequest, LLMBackend, ReplyCache, ask, request_seed

KINDS = ("attribute", "fine_attribute", "relationship")
QUESTIONS_DIR = Path(__file__).parent / "questions"
_TEMPLATE_KEYS = ("common_attributes", "class_attributes", "filter_attributes", "attribute_sentences", "subgroups",
                  "scene_sentences")


@dataclass(frozen=True)
class QuestionCounts:
    common_attributes: int = 8        # n_1: attributes common to all classes
    class_attributes: int = 5         # n_2: attributes asked for each class
    attributes_per_class: int = 3     # attributes (common + own) each class gets coarse sentences about
    fine_attributes: int = 3          # attributes kept by the relevance filter, each gets fine sentences
    sentences_per_attribute: int = 3
    coarse_groups: int = 4            # subgroups, level 1 (partial-shared tokens #1)
    fine_groups: int = 8              # subgroups, level 2 (partial-shared tokens #2)
    pairs_per_group: int = 2          # class pairs per coarse subgroup for scene sentences
    sentences_per_pair: int = 4


def load_questions(path: str | Path | None = None) -> dict[str, str]:
    """The question templates (``None``: the built-in ``questions/datafree.yaml``); every key must be there."""
    path = Path(path) if path else QUESTIONS_DIR / "datafree.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"llm.questions: {path} not found") from None
    missing = [k for k in _TEMPLATE_KEYS if not isinstance(raw, dict) or not isinstance(raw.get(k), str)]
    if missing:
        raise ValueError(f"{path}: question templates {missing} are missing (need {list(_TEMPLATE_KEYS)})")
    return raw


# ---------------------------------------------------------------------------------------------------------
# reply parsing
# ---------------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_MARKER = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.):]\)?|[-*•+·–]|[a-zA-Z][.)])\s+")
_PREAMBLE = re.compile(r"^(sure|here|okay|ok|certainly|of course|below|these|i hope|note|the (above|following)|"
                       r"answer|let me)\b", re.I)
_MARKUP = re.compile(r"\*\*|__|`|^#+\s*")


def _json_value(reply: str):
    """The first JSON array/object in the reply (inside a code fence or bare), else None."""
    for text in [*_FENCE.findall(reply), reply]:
        for open_, close in (("[", "]"), ("{", "}")):
            lo, hi = text.find(open_), text.rfind(close)
            if 0 <= lo < hi:
                try:
                    return json.loads(text[lo:hi + 1])
                except (json.JSONDecodeError, RecursionError):  # nested past the recursion limit: not usable JSON
                    continue
    return None


def _strip_markup(line: str) -> str:
    return _MARKUP.sub("", line).strip().strip('"“”\'').strip()


def _raw_items(reply: str, split_commas: bool) -> list[str]:
    value = _json_value(reply)
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int, float))]
    if isinstance(value, dict):
        out = []
        for k, v in value.items():
            out += [str(x) for x in v] if isinstance(v, list) else [str(v) if isinstance(v, str) else str(k)]
        return out
    lines = [ln.strip() for ln in _FENCE.sub(lambda m: m.group(1), reply).splitlines() if ln.strip()]
    table = [ln for ln in lines if ln.startswith("|")]
    if table:  # markdown table: every cell of every non-separator row but the header
        rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in table if not re.fullmatch(r"[|\s:-]+", ln)]
        return [c for row in rows[1:] for c in row if c]
    marked = [_MARKER.sub("", ln, count=1) for ln in lines if _MARKER.match(ln)]
    if marked:
        return marked
    body = [ln for ln in lines if not ln.endswith(":") and not _PREAMBLE.match(ln)]
    if split_commas and len(body) == 1:
        return re.split(r"\s*[,;]\s*|\s+and\s+", body[0])
    return body


def parse_phrases(reply: str, max_words: int = 4) -> list[str]:
    """Short items (attribute words) from a messy reply: lower case, no "word: explanation" tails, unique."""
    out, seen = [], set()
    for item in _raw_items(reply, split_commas=True):
        item = _strip_markup(item)
        item = re.split(r"\s*(?::|\s-\s|\s–\s|\(|\.\s)", item, maxsplit=1)[0]
        item = re.sub(r"[^a-z0-9 '-]", "", item.lower()).strip(" -'")
        if item and len(item.split()) <= max_words and re.search(r"[a-z]", item) and item not in seen:
            seen.add(item)
            out.append(item)
    return out


def parse_sentences(reply: str, min_words: int = 3, max_words: int = 40) -> list[str]:
    """Sentences from a messy reply: list markers, headings ("**Colour**: ...") and quotes removed, unique."""
    out, seen = [], set()
    for item in _raw_items(reply, split_commas=False):
        item = _strip_markup(item)
        head, sep, tail = item.partition(":")
        if sep and len(head.split()) <= 3 and len(tail.split()) >= min_words:
            item = tail.strip()  # "Colour: The ring is red." -> the sentence
        item = re.sub(r"\s+", " ", item).strip().strip('"“”')
        if _PREAMBLE.match(item) and item.rstrip().endswith(":"):
            continue
        n = len(item.split())
        if min_words <= n <= max_words and item.lower() not in seen:
            seen.add(item.lower())
            out.append(item if item[-1] in ".!?" else item + ".")
    return out


def parse_groups(reply: str, classes_named: Callable[[str], list[int]]) -> list[tuple[str, list[int]]]:
    """Subgroups of classes: JSON ({"name": [...]}, [[...]]), "name: a, b, c" lines, or a heading followed by
    list items. ``classes_named(text)`` maps an item to class indices. A class stays in the first group that
    names it; groups of fewer than two classes are dropped (a lone class gets its own tokens anyway)."""
    groups: list[tuple[str, list[str]]] = []
    value = _json_value(reply)
    if isinstance(value, dict):
        groups = [(str(k), [str(x) for x in v] if isinstance(v, list) else [str(v)]) for k, v in value.items()]
    elif isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        groups = [(f"group {i + 1}", [str(x) for x in v]) for i, v in enumerate(value)]
    else:
        current = None
        for line in reply.splitlines():
            s = _strip_markup(_MARKER.sub("", line.strip(), count=1))
            if not s or (_PREAMBLE.match(s) and s.endswith(":") and ":" not in s[:-1]):
                continue
            name, sep, rest = s.partition(":")
            if sep and rest.strip():
                groups.append((name.strip(), re.split(r"\s*[,;/]\s*|\s+and\s+", rest.strip().rstrip("."))))
                current = None
            elif sep or line.lstrip().startswith("#"):
                current = (name.strip(), [])
                groups.append(current)
            elif current is not None:
                current[1].extend(re.split(r"\s*[,;]\s*", s.rstrip(".")))
    assigned, out = set(), []
    for name, items in groups:
        members = []
        for item in items:
            for c in classes_named(item):
                if c not in assigned and c not in members:
                    members.append(c)
        if len(members) >= 2:
            assigned.update(members)
            out.append((name or f"group {len(out) + 1}", members))
    return out


# ---------------------------------------------------------------------------------------------------------
# the question rounds
# ---------------------------------------------------------------------------------------------------------

@dataclass
class _Question:
    text: str
    parse: Callable[[str], object]
    what: str  # the stats bucket (template name)


def _parse_or_none(parse: Callable[[str], object], reply) -> object:
    """The parsed reply, or None: a reply that cannot be parsed, whatever the reason (not text, JSON nested past
    Python's recursion limit, values of unexpected types), counts as an unusable reply and is asked again."""
    if not isinstance(reply, str):
        return None
    try:
        return parse(reply)
    except (RecursionError, TypeError, ValueError, AttributeError, KeyError, IndexError):
        return None


def _ask_all(backend: LLMBackend, cache: ReplyCache, questions: Sequence[_Question], system: str | None, seed: int,
             max_retries: int, stats: dict) -> list:
    """Parsed answers (None where every try was unusable), asking only what the cache does not hold."""
    results: list = [None] * len(questions)
    pending = list(range(len(questions)))
    for attempt in range(max_retries + 1):
        if not pending:
            break
        reqs = [ChatRequest.user(questions[i].text, request_seed(seed, questions[i].text, attempt), system)
                for i in pending]
        replies, generated = ask(backend, cache, reqs, attempt)
        stats["_generated"] = stats.get("_generated", 0) + generated
        still = []
        for i, reply in zip(pending, replies):
            parsed = _parse_or_none(questions[i].parse, reply)
            if parsed:
                results[i] = parsed
            else:
                still.append(i)
            if attempt > 0:
                stats.setdefault(questions[i].what, {}).setdefault("retried", 0)
                stats[questions[i].what]["retried"] += 1
        pending = still
    for q in questions:
        bucket = stats.setdefault(q.what, {})
        bucket["asked"] = bucket.get("asked", 0) + 1
    for i in pending:
        bucket = stats[questions[i].what]
        bucket["unusable"] = bucket.get("unusable", 0) + 1
    return results


def _class_matcher(table) -> Callable[[str], list[int]]:
    """Class indices an item names: a synonym phrase (singular or a plain plural) anywhere in the item."""
    phrases = sorted(((p, c) for p, c in table.phrases), key=lambda pc: -len(pc[0]))

    def match(item: str) -> list[int]:
        text = " " + re.sub(r"[^a-z0-9 -]", " ", item.lower()) + " "
        found = []
        for phrase, c in phrases:
            for form in (phrase, phrase + "s", phrase + "es"):
                if f" {form} " in text and c not in found:
                    found.append(c)
                    text = text.replace(f" {form} ", " ")
        return found
    return match


def generate_llm_text(backend: LLMBackend, cache: ReplyCache, classes: Sequence[str], table, *,
                      questions: dict[str, str], counts: QuestionCounts, kinds: Sequence[str], seed: int,
                      max_retries: int) -> tuple[pd.DataFrame, dict, dict, dict]:
    """Ask the questions; -> (sentences DataFrame[caption, source, image_id, labels, kind, about, attribute],
    subgroups {"coarse": [...], "fine": [...]}, summary, run stats).

    The summary (the stage's metrics) depends only on the replies; the run stats (replies generated now,
    replies in the reply cache) on the local cache, so they are printed, never written into an output."""
    from mlr_core.text.noun_filter import class_counts, label_sentences

    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"llm.kinds: unknown {bad}; known: {list(KINDS)}")
    classes = list(classes)
    system, k = questions.get("system"), counts
    class_list = ", ".join(classes)
    stats: dict = {}
    matcher = _class_matcher(table)

    def ask_round(qs):
        return _ask_all(backend, cache, qs, system, seed, max_retries, stats)

    def groups_parser(reply):
        return parse_groups(reply, matcher)

    # round 1: attributes and subgroups
    need_attrs = bool({"attribute", "fine_attribute"} & set(kinds))
    qs = [_Question(questions["subgroups"].format(class_list=class_list, n=k.coarse_groups), groups_parser, "subgroups"),
          _Question(questions["subgroups"].format(class_list=class_list, n=k.fine_groups), groups_parser, "subgroups")]
    if need_attrs:
        qs.append(_Question(questions["common_attributes"].format(class_list=class_list, n=k.common_attributes,
                                                                  n_classes=len(classes)), parse_phrases,
                            "common_attributes"))
        qs += [_Question(questions["class_attributes"].format(cls=c, n=k.class_attributes), parse_phrases,
                         "class_attributes") for c in classes]
    answers = ask_round(qs)
    coarse, fine = answers[0] or [], answers[1] or []
    common = (answers[2] or [])[:k.common_attributes] if need_attrs else []
    own = [(a or [])[:k.class_attributes] for a in answers[3:]] if need_attrs else [[] for _ in classes]

    # round 2: coarse attribute sentences, the relevance filter, scene sentences
    sentence_qs: list[tuple[_Question, str, str, str]] = []  # (question, kind, about, attribute)
    filter_qs = []
    coarse_attrs = []
    for c, name in enumerate(classes):
        pool = list(dict.fromkeys(common + own[c]))
        coarse_attrs.append(pool)
        if "attribute" in kinds and pool:
            chosen = random.Random(request_seed(seed, "attributes", name)).sample(pool, min(k.attributes_per_class, len(pool)))
            sentence_qs += [(_Question(questions["attribute_sentences"].format(cls=name, attribute=a,
                                                                               n=k.sentences_per_attribute),
                                       parse_sentences, "attribute_sentences"), "attribute", name, a) for a in chosen]
        if "fine_attribute" in kinds and pool:
            filter_qs.append((c, _Question(questions["filter_attributes"].format(
                attribute_list=", ".join(pool), cls=name, n=k.fine_attributes), parse_phrases, "filter_attributes")))
    pairs = []
    if "relationship" in kinds:
        for g, (_, members) in enumerate(coarse):
            all_pairs = list(itertools.combinations(members, 2))
            rng = random.Random(request_seed(seed, "pairs", g, [classes[m] for m in members]))
            pairs += rng.sample(all_pairs, min(k.pairs_per_group, len(all_pairs)))
        sentence_qs += [(_Question(questions["scene_sentences"].format(cls1=classes[a], cls2=classes[b],
                                                                       n=k.sentences_per_pair),
                                   parse_sentences, "scene_sentences"), "relationship",
                         f"{classes[a]}+{classes[b]}", "") for a, b in pairs]
    answers = ask_round([q for q, *_ in sentence_qs] + [q for _, q in filter_qs])
    sentence_answers = list(zip(sentence_qs, answers[:len(sentence_qs)]))
    fine_attrs = {c: (a or [])[:k.fine_attributes] for (c, _), a in zip(filter_qs, answers[len(sentence_qs):])}

    # round 3: fine-grained attribute sentences
    fine_qs = [(_Question(questions["attribute_sentences"].format(cls=classes[c], attribute=a,
                                                                  n=k.sentences_per_attribute),
                          parse_sentences, "attribute_sentences"), "fine_attribute", classes[c], a)
               for c, attrs in fine_attrs.items() for a in attrs]
    sentence_answers += list(zip(fine_qs, ask_round([q for q, *_ in fine_qs])))

    # label every sentence with the noun filter, as captions are
    texts, meta = [], []
    for (_, kind, about, attribute), sentences in sentence_answers:
        for s in sentences or []:
            texts.append(s)
            meta.append((kind, about, attribute))
    labels, hit = label_sentences(table, texts)
    rows = pd.DataFrame({"caption": [t for t, h in zip(texts, hit) if h],
                         "source": f"llm:{backend.model_id}", "image_id": None,
                         "labels": list(labels[hit]),
                         "kind": [m[0] for m, h in zip(meta, hit) if h],
                         "about": [m[1] for m, h in zip(meta, hit) if h],
                         "attribute": [m[2] for m, h in zip(meta, hit) if h]})
    rows = rows.drop_duplicates(subset="caption", keep="first").reset_index(drop=True)

    def on_topic(kind):
        sub = rows[rows.kind == kind]
        if not len(sub):
            return None
        ok = [all(classes.index(n) in np.flatnonzero(y) for n in about.split("+"))
              for about, y in zip(sub.about, sub.labels)]
        return round(float(np.mean(ok)), 4)

    per_class, without = class_counts(np.stack(rows["labels"].to_numpy()) if len(rows) else np.zeros((0, len(classes))),
                                      classes)
    run_stats = {"replies_generated_now": stats.pop("_generated", 0), "replies_cached": len(cache)}
    summary = {
        "backend": backend.name, "model": backend.model_id,
        "questions": stats,
        "sentences_parsed": len(texts), "dropped_no_class": int((~hit).sum()), "kept": len(rows),
        "per_kind": {kd: int((rows.kind == kd).sum()) for kd in kinds},
        "names_the_asked_class": {kd: on_topic(kd) for kd in kinds},
        "per_class": per_class,
        "classes_without_sentences": without,
        "common_attributes": common,
    }
    subgroups = {"coarse": [{"name": n, "classes": [classes[m] for m in ms]} for n, ms in coarse],
                 "fine": [{"name": n, "classes": [classes[m] for m in ms]} for n, ms in fine],
                 "attributes": {classes[c]: {"coarse": coarse_attrs[c], "fine": fine_attrs.get(c, [])}
                                for c in range(len(classes))}}
    return rows, subgroups, summary, run_stats


def write_llm_text(rows: pd.DataFrame, subgroups: dict, summary: dict, classes: Sequence[str], *,
                   sentences_path: str | Path, subgroups_path: str | Path, summary_path: str | Path) -> None:
    """The stage's outputs: sentences in the mined-captions Parquet format (+ kind, about, attribute
    columns; read_mined reads it), the subgroups JSON, the summary (DVC metrics)."""
    from mlr_core.io import atomic_write_json
    from mlr_core.text.mining import write_mined

    if rows.empty:
        raise ValueError("the LLM produced no usable sentence that names a class (see the summary's question "
                         f"stats: {summary.get('questions')}); check llm.model and the question templates")
    write_mined(rows, list(classes), summary, sentences_path, summary_path)
    atomic_write_json(subgroups_path, subgroups)
