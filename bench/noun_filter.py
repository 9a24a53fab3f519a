"""Benchmark the caption noun filter: mining throughput and label quality, NounFilter vs the reference.

Corpus (seeded): half tinyworld captions (``mlr_core.data.tinyworld.caption_scene``, ground truth = the
classes the grammar put in the caption), half COCO-like sentences from the template grammar below
(ground truth by construction: a filler names a class only where the class is the head noun; verbs,
adjectives and noun modifiers of class words are the traps). Each part is mined with its own dataset's
table (tinyworld / coco2014). Both methods label the same sentences in the same process:

* ``reference``: :func:`mlr_core.text.noun_filter.reference_labels`, the TaI-DPT algorithm, one caption at
  a time (NLTK's ``pos_tag`` keeps its tagger loaded between calls, so no reload is counted);
* ``noun_filter``: a fresh :class:`NounFilter` (construction timed, cold caches) and
  :meth:`NounFilter.label_many` on the whole list. The one-off NLTK/WordNet load (a few seconds, shared
  by both) is done before timing.

Reported: sentences/s for both, the ratio, agreement (identical label sets), micro precision/recall/F1
against the ground truth per part and overall, and the fast path's agreement with ``NounFilter.labels``
on a sample. Then the hand-labelled check set (``tests/data/noun_filter_check.tsv``, written sentence by
sentence in the COCO caption style, each with its table, pattern and gold classes): micro precision /
recall / F1 per pattern and overall for the reference, this filter, and this filter without the shared
stop-phrases. Writes bench/results/noun_filter.json.

Usage: python bench/noun_filter.py [--n 100000] [--seed 0] [--check-slow 2000]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import mlr_core.data.tinyworld as tw
from mlr_core.io import atomic_write_json
from mlr_core.text.noun_filter import NounFilter, SynonymTable, reference_labels

RESULTS = Path(__file__).parent / "results" / "noun_filter.json"
CHECK_SET = Path(__file__).resolve().parent.parent / "tests" / "data" / "noun_filter_check.tsv"


# ----------------------------------------------------------------------------------- the check set
def read_check_set(path: Path = CHECK_SET) -> list[tuple[str, str, set[str], str]]:
    """(table, pattern, gold class names, sentence) per row of the hand-labelled check set."""
    rows = []
    header_seen = False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if not header_seen:
            if fields != ["table", "pattern", "gold", "sentence"]:
                raise ValueError(f"{path}:{n}: expected the header table, pattern, gold, sentence")
            header_seen = True
            continue
        if len(fields) != 4 or not all(fields):
            raise ValueError(f"{path}:{n}: expected 4 tab-separated fields (table, pattern, gold, sentence)")
        table, pattern, gold, sentence = fields
        rows.append((table, pattern, set() if gold == "-" else set(gold.split("|")), sentence))
    return rows


def check_set_scores(rows: list[tuple[str, str, set[str], str]]) -> dict:
    """Micro precision / recall / F1 per pattern (pooled over tables) and overall, for the reference, this
    filter, and this filter with no shared stop-phrases."""
    methods = ("reference", "noun_filter", "noun_filter_no_stop_phrases")
    pred: dict[str, list[set]] = {m: [] for m in methods}
    gold: list[set] = []
    patterns: list[str] = []
    for t, name in enumerate(sorted({r[0] for r in rows})):
        table = SynonymTable.load(name)
        bare = SynonymTable.load(name, stop_file=None)
        idx = {c: i for i, c in enumerate(table.classes)}
        ours, no_stops = NounFilter(table), NounFilter(bare)
        for tname, pattern, g, sentence in rows:
            if tname != name:
                continue
            unknown = g - set(idx)
            if unknown:
                raise ValueError(f"{CHECK_SET}: {sentence!r}: {sorted(unknown)} are not classes of {name}")
            shift = 1000 * t  # disjoint class ids per table for the pooled scores
            pred["reference"].append({c + shift for c in reference_labels(sentence, table)})
            pred["noun_filter"].append({c + shift for c in ours.labels(sentence)})
            pred["noun_filter_no_stop_phrases"].append({c + shift for c in no_stops.labels(sentence)})
            gold.append({idx[c] + shift for c in g})
            patterns.append(pattern)
    out: dict = {"sentences": len(gold), "per_pattern": {}}
    for pattern in sorted(set(patterns)):
        keep = [i for i, p in enumerate(patterns) if p == pattern]
        out["per_pattern"][pattern] = {"sentences": len(keep), **{
            m: prf([pred[m][i] for i in keep], [gold[i] for i in keep]) for m in methods}}
    out["overall"] = {m: prf(pred[m], gold) for m in methods}
    out["sentences_exactly_right"] = {m: sum(p == g for p, g in zip(pred[m], gold)) for m in methods}
    return out


# ----------------------------------------------------------------------------------------- tinyworld
def tinyworld_labelled(n: int, seed: int, partial_prob: float = 0.35) -> list[tuple[str, set[str]]]:
    """tinyworld captions and the classes each one names (recorded from the caption grammar itself)."""
    rng = np.random.default_rng([seed, 11])
    out = []
    for _ in range(n):
        caption, named = tw.caption_with_classes(tw.sample_scene(rng), rng, partial_prob=partial_prob)
        out.append((caption, {tw.CLASSES[c] for c in named}))
    return out


# ----------------------------------------------------------------------------------------- COCO-like
# (text, classes) fillers. A class is listed only where the phrase names that object as its head noun.
_SUBJ_SG = [
    ("a man", {"person"}), ("a woman", {"person"}), ("a young boy", {"person"}), ("a little girl", {"person"}),
    ("an old man", {"person"}), ("a person", {"person"}), ("a skier", {"person"}), ("a surfer", {"person"}),
    ("a dog", {"dog"}), ("a small puppy", {"dog"}), ("a brown horse", {"horse"}), ("a white horse", {"horse"}),
    ("an orange cat", {"cat"}), ("a black cat", {"cat"}), ("a tabby kitten", {"cat"}), ("a cow", {"cow"}),
    ("a large elephant", {"elephant"}), ("a baby elephant", {"elephant"}), ("a giraffe", {"giraffe"}),
    ("a zebra", {"zebra"}), ("a brown bear", {"bear"}), ("a polar bear", {"bear"}), ("a bird", {"bird"}),
    ("a seagull", {"bird"}), ("a sheep", {"sheep"}), ("a teddy bear", {"teddy bear"}),
    ("a man in a tie", {"person", "tie"}), ("a woman with an umbrella", {"person", "umbrella"}),
    ("a boy with a backpack", {"person", "backpack"}), ("a girl holding a kite", {"person", "kite"}),
    ("a bus driver", set()), ("a train conductor", set()), ("a pizza delivery guy", {"person"}),
]
_SUBJ_PL = [
    ("two men", {"person"}), ("three women", {"person"}), ("some people", {"person"}), ("children", {"person"}),
    ("a group of people", {"person"}), ("two dogs", {"dog"}), ("several horses", {"horse"}),
    ("two orange cats", {"cat"}), ("a herd of cattle", {"cow"}), ("elephants", {"elephant"}),
    ("two giraffes", {"giraffe"}), ("zebras", {"zebra"}), ("a flock of geese", {"bird"}), ("birds", {"bird"}),
    ("sheep", {"sheep"}), ("two mice", {"mouse"}), ("men and women", {"person"}), ("tennis players", {"person"}),
]
_VERB_SG = ["sleeps", "sits", "stands", "waits", "rests", "walks", "lies", "looks around", "is standing",
            "is sitting", "is waiting", "is resting", "sitting", "standing", "waiting", "grazes", "plays"]
_VERB_PL = ["sleep", "sit", "stand", "wait", "rest", "walk", "are standing", "are sitting", "sitting", "standing",
            "waiting", "graze", "play", "gather"]
_PREP = ["on", "next to", "near", "in front of", "beside", "behind", "under", "by", "at"]
_PLACE = [
    ("a bench", {"bench"}), ("the couch", {"couch"}), ("a wooden table", {"dining table"}), ("the bed", {"bed"}),
    ("a bus stop", set()), ("the train tracks", set()), ("a train station", set()), ("a red car", {"car"}),
    ("a parked truck", {"truck"}), ("a fire hydrant", {"fire hydrant"}), ("a stop sign", {"stop sign"}),
    ("a traffic light", {"traffic light"}), ("the kitchen sink", {"sink"}), ("a dog bed", {"bed"}),
    ("a pizza box", set()), ("a tie rack", set()), ("the car door", set()), ("a boat dock", set()),
    ("a clock tower", set()), ("a window", set()), ("the beach", set()), ("a grassy field", set()),
    ("the road", set()), ("a large tree", set()), ("a brick wall", set()), ("the water", set()),
    ("a parking meter", {"parking meter"}), ("a motorcycle", {"motorcycle"}), ("a bicycle", {"bicycle"}),
    ("an airplane", {"airplane"}), ("a train", {"train"}), ("a bus", {"bus"}), ("a boat", {"boat"}),
    ("a chair", {"chair"}), ("a potted plant", {"potted plant"}), ("a refrigerator", {"refrigerator"}),
    ("a toilet", {"toilet"}), ("an oven", {"oven"}), ("a laptop", {"laptop"}), ("the tv", {"tv"}),
]
_TRANS = ["holding", "carrying", "eating", "looking at", "playing with", "next to", "with", "holds", "carries"]
_OBJ = [
    ("a frisbee", {"frisbee"}), ("a cell phone", {"cell phone"}), ("her phone", {"cell phone"}),
    ("a hot dog", {"hot dog"}), ("two hot dogs", {"hot dog"}), ("a slice of pizza", {"pizza"}),
    ("a donut", {"donut"}), ("a sandwich", {"sandwich"}), ("an apple", {"apple"}), ("a banana", {"banana"}),
    ("an orange", {"orange"}), ("some oranges", {"orange"}), ("a glass of orange juice", set()),
    ("a cup of coffee", {"cup"}), ("a wine glass", {"wine glass"}), ("a bottle of water", {"bottle"}),
    ("a tennis racket", {"tennis racket"}), ("a baseball bat", {"baseball bat"}), ("a soccer ball", {"sports ball"}),
    ("a skateboard", {"skateboard"}), ("a surfboard", {"surfboard"}), ("a snowboard", {"snowboard"}),
    ("a pair of skis", {"skis"}), ("a kite", {"kite"}), ("an umbrella", {"umbrella"}), ("a handbag", {"handbag"}),
    ("a suitcase", {"suitcase"}), ("a book", {"book"}), ("a remote control", {"remote"}), ("a teddy bear", {"teddy bear"}),
    ("a toothbrush", {"toothbrush"}), ("a pair of scissors", {"scissors"}), ("a knife", {"knife"}),
    ("a fork and a knife", {"fork", "knife"}), ("a bowl of broccoli", {"bowl", "broccoli"}),
    ("a plate of carrots", {"carrot"}), ("a birthday cake", {"cake"}), ("a carrot cake", {"cake"}),
    ("a vase of flowers", {"vase"}), ("a laptop computer", {"laptop"}), ("a computer mouse", {"mouse"}),
    ("a keyboard", {"keyboard"}), ("a hair dryer", {"hair drier"}), ("a clock", {"clock"}),
    ("an orange umbrella", {"umbrella"}), ("a cat toy", set()), ("a pizza box", set()), ("banana bread", set()),
    ("an apple pie", set()), ("a toilet brush", set()), ("a dog leash", set()), ("a horse saddle", set()),
]
_SCENE = [("a kitchen", set()), ("a living room", set()), ("a bathroom", set()), ("an office", set()),
          ("a busy street", set()), ("a dining room", set()), ("a bedroom", set())]
_TRAPS = [  # verbs and adjectives that look like class names
    ("people train for a race {prep} {place}.", {"person"}),
    ("a man ties his tie {prep} {place}.", {"person", "tie"}),
    ("a woman skis down a snowy hill {prep} {place}.", {"person"}),
    ("a boy bats at a ball {prep} {place}.", {"person", "sports ball"}),
    ("a boat sinks {prep} {place}.", {"boat"}),
    ("a woman bears the heavy load {prep} {place}.", {"person"}),
    ("the man is benching weights {prep} {place}.", {"person"}),
    ("a remote village {prep} {place}.", set()),
    ("an orange and white cat {prep} {place}.", {"cat"}),
    ("a man forks over money {prep} {place}.", {"person"}),
]


def _cap(s: str, rng: np.random.Generator) -> str:
    """Surface variation as in real captions: capitalised, a missing or spaced final period."""
    r = rng.random()
    if r < 0.5:
        s = s[0].upper() + s[1:]
    r = rng.random()
    if r < 0.15:
        s = s[:-1]
    elif r < 0.25:
        s = s[:-1] + " ."
    return s


def coco_like_labelled(n: int, seed: int) -> list[tuple[str, set[str]]]:
    rng = np.random.default_rng([seed, 12])

    def pick(lst):
        return lst[int(rng.integers(len(lst)))]

    out = []
    for _ in range(n):
        k = rng.random()
        if k < 0.3:
            (subj, g1), verb = (pick(_SUBJ_SG), pick(_VERB_SG)) if rng.random() < 0.6 else (pick(_SUBJ_PL), pick(_VERB_PL))
            place, g2 = pick(_PLACE)
            text, gold = f"{subj} {verb} {pick(_PREP)} {place}.", g1 | g2
        elif k < 0.6:
            subj, g1 = pick(_SUBJ_SG + _SUBJ_PL)
            obj, g2 = pick(_OBJ)
            text, gold = f"{subj} {pick(_TRANS)} {obj}.", g1 | g2
        elif k < 0.8:
            subj, g1 = pick(_SUBJ_SG + _SUBJ_PL)
            obj, g2 = pick(_OBJ)
            place, g3 = pick(_PLACE)
            text, gold = f"{subj} {pick(_TRANS)} {obj} {pick(_PREP)} {place}.", g1 | g2 | g3
        elif k < 0.9:
            scene, g1 = pick(_SCENE)
            (a, ga), (b, gb) = pick(_OBJ), pick(_PLACE)
            text, gold = f"{scene} with {a} and {b}.", g1 | ga | gb
        else:
            tmpl, g1 = pick(_TRAPS)
            place, g2 = pick(_PLACE)
            text, gold = tmpl.format(prep=pick(_PREP), place=place), g1 | g2
        out.append((_cap(text, rng), gold))
    return out


# ------------------------------------------------------------------------------------------- scoring
def prf(pred: list[set[int]], gold: list[set[int]]) -> dict:
    tp = sum(len(p & g) for p, g in zip(pred, gold))
    fp = sum(len(p - g) for p, g in zip(pred, gold))
    fn = sum(len(g - p) for p, g in zip(pred, gold))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "tp": tp, "fp": fp,
            "fn": fn}


def rows_to_sets(m: np.ndarray) -> list[set[int]]:
    return [set(np.flatnonzero(r).tolist()) for r in m]


def run(n: int, seed: int, check_slow: int) -> dict:
    parts = {"tinyworld": tinyworld_labelled(n // 2, seed), "coco2014": coco_like_labelled(n - n // 2, seed)}
    tables = {name: SynonymTable.load(name) for name in parts}
    # Warm-up outside the timings: NLTK tagger, WordNet (a few seconds), the tokenizer.
    reference_labels("a dog on a couch.", tables["coco2014"])
    NounFilter(tables["coco2014"]).label_many(["a dog on a couch."])

    result: dict = {"n_sentences": n, "seed": seed, "parts": {}}
    t_ref = t_fast = 0.0
    all_ref, all_fast, all_gold = [], [], []
    for p, (name, data) in enumerate(parts.items()):
        table = tables[name]
        idx = {c: i for i, c in enumerate(table.classes)}
        sentences = [s for s, _ in data]
        gold = [{idx[c] for c in g} for _, g in data]

        t = time.perf_counter()
        ref = [reference_labels(s, table) for s in sentences]
        t_ref += (dt_ref := time.perf_counter() - t)

        t = time.perf_counter()
        nf = NounFilter(table)  # fresh, no cache carried over; its construction is timed
        fast = rows_to_sets(nf.label_many(sentences))
        t_fast += (dt_fast := time.perf_counter() - t)

        sample = range(0, len(sentences), max(1, len(sentences) // max(1, check_slow)))
        slow_same = sum(nf.labels(sentences[i]) == fast[i] for i in sample) / len(sample)
        result["parts"][name] = {
            "sentences": len(sentences), "unique_sentences": len(set(sentences)),
            "reference": {"seconds": round(dt_ref, 3), "sentences_per_s": round(len(sentences) / dt_ref, 1),
                          **prf(ref, gold)},
            "noun_filter": {"seconds": round(dt_fast, 3), "sentences_per_s": round(len(sentences) / dt_fast, 1),
                            **prf(fast, gold)},
            "speedup": round(dt_ref / dt_fast, 2),
            "agreement_with_reference": round(sum(a == b for a, b in zip(ref, fast)) / len(fast), 4),
            "fast_equals_slow_path_on_sample": round(slow_same, 4), "slow_path_sample": len(sample),
        }
        shift = 1000 * p  # disjoint class ids per part for the pooled scores
        all_ref += [{c + shift for c in s} for s in ref]
        all_fast += [{c + shift for c in s} for s in fast]
        all_gold += [{c + shift for c in s} for s in gold]
    result["overall"] = {
        "reference_sentences_per_s": round(n / t_ref, 1), "noun_filter_sentences_per_s": round(n / t_fast, 1),
        "speedup": round(t_ref / t_fast, 2),
        "agreement_with_reference": round(sum(a == b for a, b in zip(all_ref, all_fast)) / n, 4),
        "reference": prf(all_ref, all_gold), "noun_filter": prf(all_fast, all_gold),
    }
    result["check_set"] = check_set_scores(read_check_set())
    result["platform"] = {"python": platform.python_version(), "machine": platform.machine(),
                          "processor": platform.processor() or None}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="corpus size (half tinyworld, half COCO-like)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-slow", type=int, default=2000, help="sentences per part re-labelled by the slow path")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    result = run(args.n, args.seed, args.check_slow)
    print(json.dumps(result, indent=2))
    if not args.no_write:
        atomic_write_json(RESULTS, result)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
