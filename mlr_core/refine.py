"""The training-free refiners (SPARC, class concepts) on top of the base methods' saved test scores: which
runs are refined, where their scores and the refined ones live, and the evaluation, like any method's.

For each base of ``refine.bases``: an untrained method's ``data/scores/<base>.parquet``, or each seed run
``s<k>`` of its runs list (``data/scores/<base>/s<k>.parquet``; controls are not refined). A refined result of
refiner R is named for the report (mlr_core/report.py: ``<group>_s<seed>``) as

* ``<base>_s<k>`` (``<base>`` for an untrained base): the refiner itself; SPARC's across-image statistics
  from the evaluated (test) images, the transductive form;
* ``<base>-ref_s<k>`` (SPARC only): the same with steps 2 and 3's statistics from the unlabelled reference
  images (trainval: the base scores them, their labels are never read);
* ``<base>-<ablation>_s<k>``: the ablations of ``refine.<refiner>.ablations`` on ``refine.ablation_bases``,

written to ``data/scores/<R>/<name>.parquet``, ``metrics/<R>/<name>.json`` and the plots ``<R>/<name>``.
The threshold metrics take ``sigmoid`` of the refined scores standardised per image over the classes (above
the image's mean class score = above 0.5; per image, so not transductive); like every prompt method's, they
do not compare across kinds of methods (README: Metrics).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# The logit scale of each base's scores (the refiners that mix them with cosines divide by it) and its runs.
BASE_SCALE = {"zsclip": lambda p: p.evaluate.zeroshot.scale, "zsclip_dpt": lambda p: p.evaluate.zeroshot.scale,
              "tai": lambda p: p.tai_dpt.scale, "tai_dpt": lambda p: p.tai_dpt.scale,
              "datafree": lambda p: p.datafree.scale, "t2i_pal": lambda p: p.t2i_pal.scale}
BASE_RUNS = {"tai": lambda p: p.tai_dpt.runs, "tai_dpt": lambda p: p.tai_dpt.runs,
             "datafree": lambda p: p.datafree.runs, "t2i_pal": lambda p: p.t2i_pal.runs}
_SEED_RUN = re.compile(r"^s(\d+)$")


@dataclass(frozen=True)
class BaseRun:
    method: str
    run: str | None      # None: an untrained method's one result
    seed: int | None

    @property
    def key(self) -> str:
        return self.method if self.run is None else f"{self.method}/{self.run}"

    def name(self, suffix: str = "") -> str:
        """The refined result's name: ``<base><suffix>`` + ``_<run>``."""
        return f"{self.method}{suffix}" + ("" if self.run is None else f"_{self.run}")

    def scores_path(self, scores_dir: str | Path) -> Path:
        return Path(scores_dir) / (f"{self.method}.parquet" if self.run is None else f"{self.method}/{self.run}.parquet")


def base_runs(params) -> list[BaseRun]:
    """Every (base, seed run) the refiners refine (module docstring)."""
    out = []
    for base in params.refine.bases:
        if base not in BASE_RUNS:
            out.append(BaseRun(base, None, None))
            continue
        out += [BaseRun(base, r, int(m.group(1))) for r in BASE_RUNS[base](params) if (m := _SEED_RUN.match(r))]
    return out


def aligned_scores(path: str | Path, image_ids: list[str], classes: list[str], origin: dict) -> np.ndarray:
    """The saved (N, C) scores of ``path`` in the order of ``image_ids``; they must score the same classes and
    images, on features of the same model and dataset (``origin``: the test cache's provenance)."""
    from mlr_core.evaluate import read_scores

    ids, scores, meta = read_scores(path)
    if meta["classes"] != list(classes):
        raise ValueError(f"{path} scores other classes than the test cache")
    for what in ("model", "dataset"):
        if meta.get(what) != origin.get(what):
            raise ValueError(f"{path} was scored on features of another {what} than the test cache: re-run its "
                             f"evaluation stage (dvc repro)")
    pos = {i: r for r, i in enumerate(ids)}
    if set(ids) != set(image_ids):
        raise ValueError(f"{path} scores other images than the test cache")
    return scores[[pos[i] for i in image_ids]]


def _evaluate(refiner: str, name: str, refined: np.ndarray, ids, targets, classes, origin, params, info: dict, *,
              scores_dir, metrics_dir, plots_dir) -> dict:
    from mlr_core.evaluate import evaluate_scores, write_scores
    from mlr_core.methods.sparc import standardise_rows

    ev = params.evaluate
    write_scores(Path(scores_dir) / refiner / f"{name}.parquet", ids, classes, refined, origin)
    probs = 1 / (1 + np.exp(-standardise_rows(refined)))
    return evaluate_scores(refined, probs, targets, classes, threshold=ev.threshold, top_k=ev.top_k, ece_bins=ev.ece_bins,
                           metrics_path=Path(metrics_dir) / refiner / f"{name}.json", plots_dir=plots_dir,
                           plot_name=f"{refiner}/{name}", info={"method": refiner, **info, **origin})


def _text_labels(paths: dict[str, str | Path], kinds, fingerprint: str, columns=()) -> tuple[np.ndarray, np.ndarray | None]:
    """The noun-filter labels (and ``columns``' global features) of the text caches ``kinds``, concatenated."""
    from mlr_core.cache import FeatureCache

    parts = [FeatureCache(paths[k], expect_fingerprint=fingerprint).read(columns) for k in kinds]
    labels = np.concatenate([p.labels for p in parts])
    return labels, (np.concatenate([p.global_ for p in parts]).astype(np.float32) if columns else None)


def refine_sparc(clip, params, *, test_path, reference_path, texts: dict[str, str | Path],
                 scores_dir="data/scores", prompts_dir="data/prompts", metrics_dir="metrics",
                 plots_dir="plots") -> dict[str, dict]:
    """SPARC on every base run (module docstring): its compound prompts from the co-occurring classes of
    ``refine.sparc.cooccurrence``'s text labels (``texts``: kind -> text feature cache), the cosines S and P
    of the test (and the reference) images' global features, the base's scores E on the reference images
    from its scorer. -> result name -> metrics."""
    from tqdm import tqdm

    from mlr_core.cache import FeatureCache
    from mlr_core.evaluate import provenance, score_cache
    from mlr_core.methods import sparc as sp
    from mlr_core.methods.registry import build_scorer
    from mlr_core.methods.zsclip import hand_crafted_text
    from mlr_core.scores import global_logits
    from mlr_core.seeded_runs import artifact_path

    sp_params = params.refine.sparc
    test = FeatureCache(test_path, expect_fingerprint=clip.fingerprint)
    reference = FeatureCache(reference_path, expect_fingerprint=clip.fingerprint)
    if reference.classes != test.classes:
        raise ValueError(f"{reference_path} has other classes than {test_path}")
    classes, origin = test.classes, provenance(test)
    kinds = {"captions": ["captions"], "llm": ["llm"], "both": ["captions", "llm"]}[sp_params.cooccurrence]
    labels, _ = _text_labels(texts, kinds, clip.fingerprint)
    prompts, members = sp.compound_prompts(labels, classes, pairs_per_class=sp_params.pairs_per_class,
                                           triples_per_class=sp_params.triples_per_class,
                                           pair_template=sp_params.pair_template,
                                           triple_template=sp_params.triple_template)
    bare, compound = hand_crafted_text(clip, classes, sp_params.bare_template), hand_crafted_text(clip, prompts, "{}")

    def cosines(cache):
        batch = cache.read(("global",))  # labels come along; only the test labels are read (the metrics)
        g = torch.from_numpy(batch.global_.astype(np.float32))
        return batch, global_logits(g, bare, 1.0).double().numpy(), global_logits(g, compound, 1.0).double().numpy()

    test_batch, S, P = cosines(test)
    _, S_ref, P_ref = cosines(reference)
    ref_ids = reference.read(()).image_ids
    cfg = sp.build_refiner(params)
    info0 = {"compound_prompts": len(prompts), "cooccurrence": sp_params.cooccurrence}
    out = {}
    for run in tqdm(base_runs(params), desc="refine sparc", unit="run"):
        E = aligned_scores(run.scores_path(scores_dir), test_batch.image_ids, classes, origin)
        artifact = None if run.run is None else artifact_path(prompts_dir, run.method, run.run)
        ref_ids_scored, E_ref, _, _ = score_cache(reference, build_scorer(run.method, clip, classes, params, artifact))
        assert ref_ids_scored == ref_ids
        jobs = [("", "all", None), ("-ref", "all", (E_ref, S_ref, P_ref))]
        if run.method in params.refine.ablation_bases:
            jobs += [(f"-{v}", v, None) for v in sp_params.ablations]
        for suffix, variant, ref in jobs:
            refined = sp.sparc(E, S, P, members, cfg.variant(variant), reference=ref)
            info = {"base": run.key, "seed": run.seed, "variant": variant,
                    "statistics": "transductive (test images)" if ref is None else
                    f"reference set ({Path(reference_path).name}, labels unread)", **info0}
            name = run.name(suffix)
            out[name] = _evaluate("sparc", name, refined, test_batch.image_ids, test_batch.labels, classes, origin,
                                  params, info, scores_dir=scores_dir, metrics_dir=metrics_dir, plots_dir=plots_dir)
    return out


def refine_class_concepts(params, *, test_path, texts: dict[str, str | Path], scores_dir="data/scores",
                          metrics_dir="metrics", plots_dir="plots") -> dict[str, dict]:
    """Class concepts on every base run (module docstring): the bank of ``refine.concepts.texts``, the test
    images' global and region features. -> result name -> metrics."""
    from tqdm import tqdm

    from mlr_core.cache import FeatureCache
    from mlr_core.evaluate import provenance
    from mlr_core.methods import class_concepts as cc

    cp = params.refine.concepts
    test = FeatureCache(test_path)
    classes, origin = test.classes, provenance(test)
    labels, bank = _text_labels(texts, cp.texts, test.meta["fingerprint"], columns=("global",))
    bank, labels = torch.from_numpy(bank), torch.from_numpy(labels.astype(np.int64))
    batch = test.read(("global", "dense"))
    g, d = (torch.from_numpy(x.astype(np.float32)) for x in (batch.global_, batch.dense))
    cfg = cc.build_refiner(params)
    concept = {}  # (refine, bank part, groups) -> (N, C) concept scores: the same for every base and weight

    def scores_of(v) -> np.ndarray:
        key = (v.refine, v.bank_fraction, v.bank_groups)
        if key not in concept:
            concept[key] = cc.bank_concept_scores(g, d, bank, labels, v)
        return concept[key]

    out = {}
    for run in tqdm(base_runs(params), desc="refine class concepts", unit="run"):
        E = aligned_scores(run.scores_path(scores_dir), batch.image_ids, classes, origin)
        jobs = [("", "all")] + ([(f"-{v}", v) for v in cp.ablations] if run.method in params.refine.ablation_bases
                                else [])
        for suffix, variant in jobs:
            v = cfg.variant(variant)
            refined = cc.logit_ensemble(E, BASE_SCALE[run.method](params), scores_of(v), v.weight)
            info = {"base": run.key, "seed": run.seed, "variant": variant, "bank_texts": list(cp.texts),
                    "bank_size": len(cc.bank_subset(len(bank), v.bank_fraction, v.seed))}
            name = run.name(suffix)
            out[name] = _evaluate("class_concepts", name, refined, batch.image_ids, batch.labels, classes, origin,
                                  params, info, scores_dir=scores_dir, metrics_dir=metrics_dir, plots_dir=plots_dir)
    return out
