"""Caption noun filter: which classes a caption names as objects (the caption-mining step of TaI-DPT).

This module is the rule; its machinery lives next to it: the synonym tables in
:mod:`mlr_core.text.synonym_table`, NLTK loading, the fast tagger and WordNet inflections in
:mod:`mlr_core.text.tagging`.

The TaI-DPT reference lowercases a caption, word-tokenizes, POS-tags and lemmatizes every token with
WordNet (J/V/N/R -> a/v/n/r, else n), then matches each class's synonyms as whole words on the lemma
string, multi-word names first (their words are removed, so "hot dog" does not also fire "dog"). It
never looks at the tag again: "a man ties his tie", "people train for a race", "an orange cat" all fire
the verb/adjective. :func:`reference_labels` re-implements exactly that, for the benchmark and tests.

:class:`NounFilter` keeps the same tokenizer, tagger and WordNet, and fires a single-word synonym only
on a *noun use*. Rule ``"head"`` (the default):

1. The token is tagged as a noun (NN*).
2. It is not a modifier: a noun directly followed by another noun is a noun adjunct and does not fire
   ("an orange cat": the tagger tags the colour NN; "tie rack", "bus stop", "orange juice", "train
   tracks", "baby elephant"), the last noun of the compound does...
3. ...unless that next "noun" is the verb the tagger mistook for one: a 3rd-person -s verb after a
   singular noun ("a cat sleeps/NNS", "a snowboarder jumps/NN", but not "two teal drops"), a base form
   after a plural, or a participle ("a raindrop drawn/NN on paper"), ending the noun group and a verb
   rather than a noun by WordNet's SemCor sense counts (``cntlist.rev``). Then the noun before it is
   the head and fires, and that "noun" itself never fires ("a man ties").
4. Tagger-error repairs, each a closed-class or WordNet fact: prepositions read as IN ("a raindrop
   beside/NN", "next/JJ to"), punctuation as punctuation ("(/NN"), a verb/adjective tag on a word
   WordNet knows only as a noun as NN ("a pizza oven/VBN", "geese/JJ"); a synonym tagged JJ/CC in the
   head slot of a noun group ("a red square .", "a kite/JJ flies", "a teal plus/CC ,"), VB/VBP/VBG
   after a determiner/adjective ("a small cross/VB next to") or VBZ in a counted group ("two pink
   drops/VBZ") is a noun; a colour coordinated with an adjective is not ("an orange and white cat").
5. A second opinion on step 3 where WordNet's sense counts favour the noun ("dogs bark/NN at", "elephants
   file/NN through", "geese/NN honk at", "two sheep/NN graze", "a dog barks/NN at", "a man ships/NNS a
   package"): a verb form that agrees with the noun before it is the verb when the next token opens a
   predicate (a preposition, particle, adverb, object determiner or pronoun; not the end of the
   sentence, where noun-phrase captions put their compounds) and that noun group is a clause's subject
   (a plural by its form, not only its tag, not led by "a"/"this"/... nor governed by a preposition
   other than "of"; a singular led by a determiner). Only the suspicious pattern (noun + verb form
   tagged noun) is looked at, and every WordNet fact is cached per word.

Rules "pos" (1 only), "pos_compound" (1 + "not followed by a noun tag") and "head_strict" (1-3) are
kept for the comparison that chose "head". Micro precision / recall (hand-labelled COCO-style
captions in tests/test_noun_filter.py, 155 captions, on which the rule was developed):
reference .898/.987, pos .923/.964, pos_compound .977/.942, head_strict .982/.960, head .991/.996;
tinyworld captions (3000, grammar ground truth): reference .973/1.000, pos 1.0/.991, pos_compound
1.0/.985, head_strict 1.0/.991, head 1.0/.9998. Sets written afterwards: 80 further hand-labelled
captions (COCO_HELDOUT) reference .924/1.0, head .991/.991; the generated COCO-like half of
bench/noun_filter.py reference .81/.98, head .999/.994. (Their errors prompted three of the repairs in
4, all general: "-s verb tagged NN", JJ/VB on WordNet-noun-only words, JJR/VBG/VBP rescues; before
them head scored .991/.982 and .993/.990 there.)

Stop-phrases (``synonyms/stop_phrases.yaml``, shared by every table, plus a table's own
``stop_phrases``; see :mod:`mlr_core.text.synonym_table`) match like multi-word synonyms and fire
nothing: "hot dog" consumes "dog" for VOC as it does for COCO, "power plant" is no potted plant.

Multi-word synonyms match on the token sequence (each word against the token or its WordNet noun
lemmas, so "hot dogs" -> "hot dog") before single words and consume their tokens; they are not
POS-checked (the phrase itself is the evidence). A token's noun lemmas are all of WordNet's
candidates, not only the shortest: NLTK's lemmatizer maps "men" to "men", so the reference misses it.

Speed (:meth:`NounFilter.label_many` returns exactly the labels of :meth:`NounFilter.labels`):
  * sentences are deduplicated and pre-screened: a sentence without any inflected surface form of a
    synonym's last word (from WordNet's noun morphology rules and exception list: people, men, mice,
    geese, knives, ...) cannot fire and is never tokenized or tagged;
  * simple lowercase captions (words, ", ", a final ".") are split directly, identically to
    ``word_tokenize`` (checked by the tests); anything else goes through ``word_tokenize``;
  * only the tags the rule reads are computed: the perceptron tagger is greedy left to right and a
    word in its tag dictionary gets its tag without context, so the tag at position i follows exactly
    from the nearest two dictionary words before it. Predictions are memoised on their exact inputs
    (word, previous two tags, the five context words) and computed as one numpy gather-and-sum over
    the tagger's own weights, with NLTK deciding any near tie (:class:`DenseTagger`);
  * WordNet lemmas and the per-word facts the rule uses are cached.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from mlr_core.text.synonym_table import SYNONYM_DIR, SynonymTable  # noqa: F401 (SYNONYM_DIR: re-exported)
from mlr_core.text.tagging import DenseTagger, NltkTools, inflections, wordnet_pos

NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
RULES = ("pos", "pos_compound", "head_strict", "head")
DEFAULT_RULE = "head"
STOP = -1  # the "class" of a stop-phrase: it consumes its words and labels nothing

_PIECE_RE = re.compile(r"[a-z0-9]+")
_ALNUM_RE = re.compile(r"[^\W_]")
_NEEDS_NORMALIZE_RE = re.compile(r"[-0-9]")  # PerceptronTagger.normalize only changes these (lowercase ASCII)
# Lowercase captions that word_tokenize splits exactly at spaces, before ", " and before a final "."
_SIMPLE_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*(?:,? [a-z0-9]+(?:-[a-z0-9]+)*)*(?: ?\.)?")
# Words the Treebank tokenizer splits although they contain no punctuation (its CONTRACTIONS2/3 lists).
_TREEBANK_SPLIT_WORDS = frozenset({"cannot", "gimme", "gonna", "gotta", "lemme", "wanna", "whaddya", "whatcha"})
_UNSEEN = object()
_ADJ_TAGS = frozenset({"JJ", "JJR", "JJS"})
_PREMOD_TAGS = frozenset({"DT", "CD", "JJ", "JJR", "JJS", "PRP$", "POS", "PDT", "NN", "IN"})
_RESCUE_TAGS = frozenset({"JJ", "JJR", "JJS", "CC"})
_DET_ADJ_TAGS = frozenset({"DT", "CD", "JJ", "JJR", "JJS", "PRP$", "POS", "PDT"})
_PLURAL_PREMOD_TAGS = frozenset({"CD", "DT", "JJ", "NN"})  # not NNS: "two people train/VBP"
_NOUN_OR_ADJ_TAGS = NOUN_TAGS | _ADJ_TAGS
_SINGULAR_NOUN_OR_ADJ_TAGS = _ADJ_TAGS | {"NN", "NNP"}
_PLURAL_DETERMINERS = frozenset({"some", "several", "many", "these", "those", "few", "both", "multiple", "various",
                                 "numerous", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"})
# Closed-class prepositions the tagger sometimes calls NN or JJ; never nouns in captions.
_PREPOSITIONS = frozenset({"above", "across", "against", "along", "alongside", "amid", "among", "amongst", "around",
                           "atop", "behind", "below", "beneath", "beside", "besides", "between", "beyond", "inside",
                           "into", "near", "next", "onto", "outside", "over", "through", "toward", "towards",
                           "under", "underneath", "upon", "within"})
_GROUP_END_TAGS = frozenset({".", ",", ":", "IN", "TO", "WDT", "RB", "RP"})
# What may follow a verb the tagger called a noun: a preposition or particle ("bark at", "line up"), an
# adverb, the determiner of an object ("ship the boxes"), a pronoun. Not the end of the sentence: noun-phrase
# captions end in compounds ("... the train tracks.", "... banana bread.", "the cats bed.").
_PREDICATE_OPENING_TAGS = frozenset({"IN", "TO", "RP", "RB", "DT", "PRP", "PRP$"})
_OBJECT_OPENING_TAGS = frozenset({"DT", "PRP", "PRP$"})
# Determiner-tagged words that also follow nouns ("the tracks that run", "the boats all docked", "boats each with")
_FLOATING_DETERMINERS = frozenset({"that", "all", "each", "both", "either", "neither", "half"})
_SINGULAR_DETERMINERS = frozenset({"a", "an", "this", "that", "each", "every", "another", "one", "1"})
_COUNTING_DETERMINERS = _PLURAL_DETERMINERS - {"some"}


def label_sentences(table: SynonymTable, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """How mined captions and LLM sentences are labelled: -> ((N, C) int8 labels of every text, the mask of the
    texts that name at least one class; the callers drop the others and report how many)."""
    labels = NounFilter(table).label_many(texts) if len(texts) else np.zeros((0, len(table)), np.int8)
    return labels, labels.any(1)


def class_counts(labels: np.ndarray, classes: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """-> (texts per class, the classes no text names): the per-class part of a mining or LLM-text summary."""
    counts = labels.sum(0) if len(labels) else np.zeros(len(classes), np.int64)
    return {c: int(n) for c, n in zip(classes, counts)}, [c for c, n in zip(classes, counts) if n == 0]


def reference_labels(sentence: str, table: SynonymTable) -> set[int]:
    """The TaI-DPT reference algorithm, faithfully: tokenize, tag and lemmatize every token, whole-word
    match on the lemma string, multi-word names first (and removed), no POS check."""
    nl = NltkTools.get()
    tagged = nl.pos_tag(nl.word_tokenize(sentence.lower()))
    lemmas = [nl.lemmatizer.lemmatize(w, wordnet_pos(t)) for w, t in tagged]
    cap = " " + " ".join(lemmas) + " "
    labels: set[int] = set()
    # stable sort: longer names first, table order within a length
    for phrase, c in sorted(table.phrases, key=lambda pc: -len(pc[0].split())):
        key = f" {phrase} "
        if key in cap:
            labels.add(c)
            cap = cap.replace(key, " ")
    return labels


# ------------------------------------------------------------------------------------------ the filter
class _Sentence:
    """The tokens of one caption and their tags, as ``PerceptronTagger.tag`` gives them.

    ``raw`` tags come either from a full ``tag()`` run (slow path) or on demand (fast path): the tagger
    is greedy left to right and a tag-dictionary word gets its tag without context, so the tag at i
    follows from the last two tag-dictionary words before it. ``tag(i)`` is the tag the rule reads
    (:meth:`NounFilter._effective`), ``None`` outside the sentence.
    """

    __slots__ = ("f", "tokens", "raw", "eff", "ctx")

    def __init__(self, f: "NounFilter", tokens: list[str], raw: list[str] | None = None):
        self.f = f
        self.tokens = tokens
        self.raw: list[str | None] = raw if raw is not None else [None] * len(tokens)
        self.eff: list[str | None] = [None] * len(tokens)
        self.ctx: list[str] | None = None

    def tag(self, i: int) -> str | None:
        if i < 0 or i >= len(self.tokens):
            return None
        e = self.eff[i]
        if e is None:
            t = self.raw[i]
            if t is None:
                t = self.f._tagdict.get(self.tokens[i])
                if t:
                    self.raw[i] = t
                else:
                    t = self._compute(i)
            e = self.eff[i] = self.f._effective(self.tokens[i], t)
        return e

    def _compute(self, i: int) -> str:
        tokens, raw, f = self.tokens, self.raw, self.f
        tagdict = f._tagdict
        s = i  # walk back to the last two known tags (tag-dictionary words or already tagged)
        while s >= 1 and not ((raw[s - 1] is not None or tokens[s - 1] in tagdict)
                              and (s < 2 or raw[s - 2] is not None or tokens[s - 2] in tagdict)):
            s -= 1
        for k in (s - 2, s - 1):
            if k >= 0 and raw[k] is None:
                raw[k] = tagdict[tokens[k]]
        ctx = self.ctx
        if ctx is None:
            ctx = self.ctx = f._context(tokens)
        cache = f._predict_cache
        for k in range(s, i + 1):
            if raw[k] is not None:
                continue
            w = tokens[k]
            t = tagdict.get(w)
            if not t:
                prev = raw[k - 1] if k >= 1 else "-START-"
                prev2 = raw[k - 2] if k >= 2 else ("-START-" if k == 1 else "-START2-")
                key = (w, prev, prev2, *ctx[k:k + 5])
                t = cache.get(key)
                if t is None:
                    t = cache[key] = f._dense.predict(k, w, ctx, prev, prev2)
            raw[k] = t
        return raw[i]


class NounFilter:
    """Which classes of ``table`` a caption names as nouns. See the module docstring for the rule.

    ``rule``: ``"head"`` (default, the measured best), or for comparison ``"head_strict"`` (steps 1-3
    without the tagger-error rescues), ``"pos_compound"`` (noun tag and not followed by a noun tag) and
    ``"pos"`` (noun tag only).
    """

    _dense_by_tagger: dict[int, DenseTagger] = {}

    def __init__(self, table: SynonymTable, rule: str = DEFAULT_RULE):
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; one of {RULES}")
        self.table = table
        self.rule = rule
        nl = NltkTools.get()
        self._nl = nl
        self._tagger = nl.tagger
        self._tagdict = nl.tagger.tagdict
        self._morphy = nl.lemmatizer._morphy  # all WordNet lemma candidates (lemmatize() keeps the shortest)
        self._single: dict[str, int] = {}
        self._multi_by_last: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for phrase, c in table.phrases:
            words = tuple(phrase.split())
            if nl.word_tokenize(phrase) != list(words):
                raise ValueError(f"{table.source}: synonym {phrase!r} of {table.classes[c]!r} does not tokenize "
                                 f"into its words ({nl.word_tokenize(phrase)})")
            if len(words) == 1:
                self._single[phrase] = c
            else:
                self._multi_by_last.setdefault(words[-1], []).append((words, c))
        exceptions = self._noun_exceptions()
        heads = set(self._single) | set(self._multi_by_last)
        all_words = {w for p, _ in table.phrases for w in p.split()}
        # Stop-phrases match like multi-word synonyms and fire nothing (class STOP); only those holding a word
        # of this table can change a label, so the others are never looked for.
        self.stop_phrases = tuple(p for p in table.stop_phrases if not all_words.isdisjoint(p.split()))
        for phrase in self.stop_phrases:
            words = tuple(phrase.split())
            self._multi_by_last.setdefault(words[-1], []).append((words, STOP))
            all_words.update(words)
        for lst in self._multi_by_last.values():
            lst.sort(key=lambda wc: -len(wc[0]))
        # Every token that can be (part of) a synonym, and the [a-z0-9] pieces of every form that can
        # be its last word: a sentence with none of the latter cannot fire and is never tagged.
        self._vocab = frozenset(v for w in all_words for v in inflections(w, exceptions))
        self._screen = frozenset(p for w in heads for v in inflections(w, exceptions) for p in _PIECE_RE.findall(v))
        self._irregular_participles = self._verb_exceptions()
        key = id(self._tagger)
        if key not in NounFilter._dense_by_tagger:
            NounFilter._dense_by_tagger[key] = DenseTagger(self._tagger)
        self._dense = NounFilter._dense_by_tagger[key]
        self._info_cache: dict[str, tuple | None] = {}
        self._word_facts: dict[tuple[str, str], bool] = {}
        self._fixed_tag: dict[str, str] = {}
        self._predict_cache: dict[tuple, str] = {}
        self._sentence_cache: dict[str, frozenset[int]] = {}

    # ------------------------------------------------------------------------------------ public API
    @property
    def num_classes(self) -> int:
        return len(self.table)

    def labels(self, sentence: str) -> set[int]:
        """The plain path: ``word_tokenize`` and a full ``PerceptronTagger.tag`` of the sentence."""
        tokens = self._nl.word_tokenize(sentence.lower())
        raw = [t for _, t in self._tagger.tag(tokens)]
        return self._match(_Sentence(self, tokens, raw))

    def label_many(self, sentences: Iterable[str]) -> np.ndarray:
        """(N, C) int8 multi-hot labels; the same labels as :meth:`labels`, much faster on a corpus.

        The filter keeps its caches (labels per distinct sentence, tags per context, facts per word)
        between calls; a new :class:`NounFilter` starts empty."""
        sentences = list(sentences)
        out = np.zeros((len(sentences), len(self.table)), dtype=np.int8)
        for n, s in enumerate(sentences):
            labels = self._fast_labels(s)
            if labels:
                out[n, list(labels)] = 1
        return out

    # ----------------------------------------------------------------------------------- internals
    def _fast_labels(self, sentence: str) -> frozenset[int]:
        cached = self._sentence_cache.get(sentence)
        if cached is not None:
            return cached
        s = sentence.lower()
        screen = self._screen
        if any(p in screen for p in _PIECE_RE.findall(s)):
            sent = _Sentence(self, self._tokenize(s))
            if s.isascii() and _NEEDS_NORMALIZE_RE.search(s) is None:
                sent.ctx = ["-START-", "-START2-", *sent.tokens, "-END-", "-END2-"]  # normalize() = identity
            labels = frozenset(self._match(sent))
        else:
            labels = frozenset()
        self._sentence_cache[sentence] = labels
        return labels

    def _tokenize(self, s: str) -> list[str]:
        """``word_tokenize(s)``, with simple captions (words, ", ", a final ".") split directly."""
        t = s.strip()
        if _SIMPLE_RE.fullmatch(t):
            period = t.endswith(".")
            tokens: list[str] = []
            for w in (t[:-1] if period else t).split():
                if w[-1] == ",":
                    tokens += (w[:-1], ",")
                else:
                    tokens.append(w)
            if period:
                tokens.append(".")
            if _TREEBANK_SPLIT_WORDS.isdisjoint(tokens):
                return tokens
        return self._nl.word_tokenize(s)

    def _context(self, tokens: list[str]) -> list[str]:
        """The tagger's context list: its normalised words between the START/END markers."""
        if any(("-" in w or w[:1].isdigit() or w != w.lower()) for w in tokens):
            norm = self._tagger.normalize
            return ["-START-", "-START2-", *(norm(w) for w in tokens), "-END-", "-END2-"]
        return ["-START-", "-START2-", *tokens, "-END-", "-END2-"]  # normalize() is the identity here

    def _word_info(self, w: str) -> tuple | None:
        """For a token: (its forms = the token and all its WordNet noun lemmas, the classes of the
        single-word synonyms among them, the multi-word synonyms ending in one of them), or None."""
        info = self._info_cache.get(w, _UNSEEN)
        if info is _UNSEEN:
            info = None
            if w in self._vocab:
                forms = frozenset({w, *self._morphy(w, "n")})
                singles = tuple(sorted({self._single[f] for f in forms if f in self._single}))
                multis = sorted((wc for f in forms for wc in self._multi_by_last.get(f, ())), key=lambda wc: -len(wc[0]))
                info = (forms, singles, multis)
            self._info_cache[w] = info
        return info

    def _match(self, sent: _Sentence) -> set[int]:
        tokens = sent.tokens
        cache, word_info = self._info_cache, self._word_info
        infos = [cache[w] if w in cache else word_info(w) for w in tokens]
        labels: set[int] = set()
        used = [False] * len(tokens)
        found = []
        for e, inf in enumerate(infos):
            if inf is not None and inf[2]:
                for words, c in inf[2]:
                    s = e - len(words) + 1
                    if s >= 0 and all(infos[s + k] is not None and words[k] in infos[s + k][0]
                                      for k in range(len(words) - 1)):
                        found.append((-len(words), s, c))
        if found:
            for negk, s, c in sorted(found):  # longest first, then leftmost; a token is used once
                if not any(used[s:s - negk]):
                    used[s:s - negk] = [True] * -negk
                    if c != STOP:
                        labels.add(c)
        for i, inf in enumerate(infos):
            if inf is not None and inf[1] and not used[i] and self._noun_use(sent, i):
                labels.update(inf[1])
        return labels

    # ------------------------------------------------------------------------------------- the rule
    def _effective(self, w: str, t: str) -> str:
        """The tag the rule reads: the tagger's, except under ``head`` a preposition reads as IN ("a
        raindrop beside/NN two trapezoids", "a dot next/JJ to"), punctuation as ":" ("a laptop (/NN"),
        and a verb or adjective tag on a word WordNet knows only as a noun as NN ("a pizza oven/VBN",
        "a baby elephant/JJ sits", "geese/JJ")."""
        if self.rule != "head":
            return t
        fixed = self._fixed_tag.get(w)
        if fixed is None:  # prepositions -> IN; punctuation -> ":" (the tagger calls "(" and ")" NN)
            fixed = self._fixed_tag[w] = "IN" if w in _PREPOSITIONS else "" if _ALNUM_RE.search(w) else ":"
        if fixed:
            return fixed
        if t[:2] in ("VB", "JJ") and self._fact("noun_only", w):
            return "NN"
        return t

    def _noun_use(self, sent: _Sentence, i: int) -> bool:
        T = sent.tag
        rule = self.rule
        t = T(i)
        if t not in NOUN_TAGS:
            # Rescue (head only): a synonym the tagger called an adjective or a conjunction in the head
            # slot of a noun group ("a red square .", "a kite/JJ flies", "a flower/JJR drawn", "a teal
            # plus/CC ,"), a "verb" right after a determiner or adjective ("a small cross/VB next to",
            # "a black ring/VBG next to"), or a plural it called a verb after a number ("two pink drops/VBZ").
            if rule != "head" or not self._ends_noun_group(sent, i + 1):
                return False
            if t in _RESCUE_TAGS:
                return i == 0 or T(i - 1) in _PREMOD_TAGS
            if t in ("VB", "VBP", "VBG"):  # no verb follows "a small", "his", "two": "a small cross/VB next"
                return T(i - 1) in _DET_ADJ_TAGS
            return (t == "VBZ" and sent.tokens[i][-1] == "s" and T(i - 1) in _PLURAL_PREMOD_TAGS
                    and self._plural_group(sent, i - 1))
        if rule == "pos":
            return True
        nxt = T(i + 1)
        if rule == "pos_compound":
            return nxt not in NOUN_TAGS
        if i > 0 and self._verb_after_noun(sent, i):  # "a man ties ...": ties is the verb
            return False
        if nxt in NOUN_TAGS and not self._verb_after_noun(sent, i + 1):  # a modifier: "orange cat"
            return False
        if (rule == "head" and nxt == "CC" and t == "NN" and T(i + 2) in _ADJ_TAGS
                and self._fact("adjective", sent.tokens[i])):  # a coordinated colour: "an orange and white cat"
            return False
        return True

    def _verb_after_noun(self, sent: _Sentence, j: int) -> bool:
        """Token j, tagged as a noun right after a noun, is really that noun's verb: a 3rd-person verb
        after a singular noun ("a cat sleeps/NNS", "a snowboarder jumps/NN", not "two teal drops"), a base form after
        a plural ("buses line up"), or a participle ("a raindrop drawn/NN on paper"), which ends the
        noun group and is a verb rather than a noun by WordNet's sense counts.

        Under ``head``, a plural is also one the tagger called NN ("geese/NN honk", "two sheep/NN graze"),
        and a verb form tagged NN that agrees with its subject gets a second opinion where the sense
        counts favour the noun reading ("dogs bark/NN at", "elephants file/NN through", "a dog barks/NN
        at"): :meth:`_agreeing_verb`."""
        T = sent.tag
        prev, t = T(j - 1), T(j)
        if prev not in NOUN_TAGS or t not in NOUN_TAGS or T(j + 1) in NOUN_TAGS:
            return False
        w = sent.tokens[j]
        head = self.rule == "head"
        singular_agree = (prev == "NN" and w[-1] == "s" and (t == "NNS" or self._fact("verb_s_form", w))
                          and not self._plural_group(sent, j - 1))
        # a plural tag on a word with no plural form is the tagger's slip for a base form ("elephants bathe/NNS")
        base_tag = t == "NN" or (head and t == "NNS" and w[-1] != "s")
        plural = head and base_tag and self._plural_noun(sent, j - 1)
        plural_agree = t == "NN" and (prev in ("NNS", "NNPS") or plural)
        if (singular_agree or plural_agree or self._fact("participle", w)) and self._fact("verb_like", w):
            return True
        if not head:
            return False
        # The second opinion: after a plural subject proven by its form, not only by its tag ("banana/NNS
        # bread"); after a singular one, an -s form the tagger called NN ("a dog barks/NN at"), or called a
        # plural noun only when an object follows, which no noun takes ("a man ships/NNS a package", not
        # "the train tracks/NNS near the station").
        if plural:
            return self._agreeing_verb(sent, j, plural=True)
        return singular_agree and self._agreeing_verb(sent, j, plural=False, object_only=t == "NNS")

    def _plural_noun(self, sent: _Sentence, k: int) -> bool:
        """Token k, a noun, is plural by its form, not only by its tag: an inflected plural ("dogs", "geese",
        "mice"; not "banana/NNS"), a word the tagger always calls plural ("people", "cattle"), or the head of
        a counted group ("two sheep", "several deer"; not "some", which also counts mass nouns: "some
        orange juice")."""
        w = sent.tokens[k]
        if self._fact("plural_form", w) or self._tagdict.get(w) in ("NNS", "NNPS"):
            return True
        T = sent.tag
        while T(k) in _SINGULAR_NOUN_OR_ADJ_TAGS:  # not over NNS: a verb the tagger called one ends the group
            k -= 1
        return k >= 0 and ((T(k) == "CD" and sent.tokens[k] not in ("one", "1"))
                           or sent.tokens[k] in _COUNTING_DETERMINERS)

    def _agreeing_verb(self, sent: _Sentence, j: int, plural: bool, object_only: bool = False) -> bool:
        """The second opinion on token j (tagged NN), a verb form agreeing with the noun before it (a base
        form after a plural, an -s form after a singular) whose WordNet sense counts favour the noun
        reading: it is the verb when the next token opens a predicate ("bark at", "trot along", "ship the
        boxes") and the noun group before it is a clause's subject: a plural group is not led by a
        singular determiner ("a sports bar on the corner") nor governed by a preposition other than "of"
        ("a group of people line up", not "near the dogs park"); a singular group starts with a determiner
        or a possessive ("a dog barks at", not the compound "dog treats in a jar"). ``object_only``: only the
        determiner or pronoun of an object counts as the opening ("ships a package")."""
        T = sent.tag
        nxt = T(j + 1)
        if object_only:
            if nxt not in _OBJECT_OPENING_TAGS or sent.tokens[j + 1] in _FLOATING_DETERMINERS:
                return False
        elif nxt not in _PREDICATE_OPENING_TAGS or sent.tokens[j + 1] == "of":
            return False
        if not self._fact("base_verb" if plural else "verb_s_form", sent.tokens[j]):
            return False
        k = j - 1
        while T(k) in _NOUN_OR_ADJ_TAGS:
            k -= 1
        before, lead = T(k), sent.tokens[k] if k >= 0 else None
        if plural:
            return lead not in _SINGULAR_DETERMINERS and (before not in ("IN", "TO") or lead == "of")
        return before in ("DT", "PRP$", "POS") and lead not in _PLURAL_DETERMINERS

    def _plural_group(self, sent: _Sentence, k: int) -> bool:
        """The noun group ending at k starts with a number or a plural determiner ("two teal drops")."""
        T = sent.tag
        while T(k) in _NOUN_OR_ADJ_TAGS:
            k -= 1
        if k < 0:
            return False
        return (T(k) == "CD" and sent.tokens[k] not in ("one", "1")) or sent.tokens[k] in _PLURAL_DETERMINERS

    def _ends_noun_group(self, sent: _Sentence, j: int) -> bool:
        """Token j ends the noun group before it: the end, punctuation, a preposition, a verb, a
        conjunction not followed by an adjective ("an orange and white cat"), or a participle or -s verb
        the tagger called a noun ("a hut/JJ drawn/NN on paper")."""
        T = sent.tag
        t = T(j)
        if t is None or t in _GROUP_END_TAGS or t[:2] == "VB":
            return True
        if t == "CC":
            return T(j + 1) not in _ADJ_TAGS
        w = sent.tokens[j]
        return (t in NOUN_TAGS and T(j + 1) not in NOUN_TAGS
                and (self._fact("participle", w) or (w[-1] == "s" and self._fact("verb_s_form", w)))
                and self._fact("verb_like", w))

    # ------------------------------------------------------------------------ per-word WordNet facts
    def _fact(self, what: str, w: str) -> bool:
        key = (what, w)
        v = self._word_facts.get(key)
        if v is None:
            v = self._word_facts[key] = getattr(self, f"_is_{what}")(w)
        return v

    def _is_verb_like(self, w: str) -> bool:
        """WordNet's tagged-corpus sense counts (cntlist.rev) favour a verb reading over a noun one."""
        wn = self._nl.wordnet

        def count(pos: str, tagged: bool) -> int:
            total = 0
            for base in set(self._morphy(w, pos)):
                for syn in wn.synsets(base, pos):
                    total += sum(lem.count() for lem in syn.lemmas() if lem.name().lower() == base) if tagged else 1
            return total

        try:
            return count("v", True) > count("n", True)
        except (OSError, LookupError):  # a WordNet copy without cntlist.rev: compare sense numbers
            return count("v", False) > count("n", False)

    def _is_participle(self, w: str) -> bool:
        """A verb's -ed/-en/-ing form (not "ring", "bread", "oven") or an irregular one (drawn, hung)."""
        return w in self._irregular_participles or (
            w.endswith(("ed", "en", "ing")) and any(b != w for b in self._morphy(w, "v")))

    def _is_verb_s_form(self, w: str) -> bool:
        """An inflected verb form ending in -s ("jumps", not "glass")."""
        return any(b != w for b in self._morphy(w, "v"))

    def _is_base_verb(self, w: str) -> bool:
        """A verb's base form ("bark", "trot", "file"; not "menu", "juice")."""
        return w in self._morphy(w, "v")

    def _is_plural_form(self, w: str) -> bool:
        """A noun's inflected plural only ("geese", "mice"; not "sheep", "glasses", "bus")."""
        bases = self._morphy(w, "n")
        return bool(bases) and w not in bases

    def _is_noun_only(self, w: str) -> bool:
        return bool(self._morphy(w, "n")) and not self._morphy(w, "v") and not self._morphy(w, "a")

    def _is_adjective(self, w: str) -> bool:
        return bool(self._morphy(w, "a"))

    def _verb_exceptions(self) -> frozenset[str]:
        """Irregular verb forms from WordNet's verb.exc (drawn, ridden, hung, ...)."""
        with self._nl.wordnet.open("verb.exc") as f:
            return frozenset(line.split()[0] for line in f if line.strip())

    def _noun_exceptions(self) -> dict[str, set[str]]:
        """base -> irregular inflected forms, from WordNet's noun.exc (mice -> mouse, ...)."""
        inverse: dict[str, set[str]] = {}
        with self._nl.wordnet.open("noun.exc") as f:
            for line in f:
                parts = line.split()
                for base in parts[1:]:
                    inverse.setdefault(base, set()).add(parts[0])
        return inverse
