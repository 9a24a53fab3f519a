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


class TaiDptParams(_Section):
    """TaI / TaI-DPT prompt tuning on caption features (mlr_core.methods.tai_dpt)."""

    variants: list[Literal["tai", "tai_dpt"]] = ["tai", "tai_dpt"]
    n_ctx: int = Field(16, ge=1)
    class_specific: bool = False
    init: Optional[str] = None
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(512, ge=1)
    margin: float = Field(1.0, gt=0, description="ranking loss margin")
    scale: float = Field(4.0, gt=0)
    text_temperature: float = Field(50.0, gt=0, description="softmax over caption tokens (training)")
    image_temperature: float = Field(40.0, gt=0, description="softmax over image regions (test)")
    local_weight: float = Field(0.5, ge=0, le=1)
    heldout_fraction: float = Field(0.05, ge=0, lt=1, description="captions held out for the training log")
    seed: int = 0


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
