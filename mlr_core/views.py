"""Seeded augmented views of the trainval images, encoded once into their own feature cache (stage
``features_views``), so the image-supervised methods (DualCoOp, PVLR, CoOp) train on augmented images at no
per-step encoding cost.

A view is a random resized crop (area fraction in ``crop_scale``, aspect ratio in [3/4, 4/3], resized back to the
image's own size, bicubic) followed by a horizontal flip with probability 1/2 when ``hflip`` is set: the
augmentations of DualCoOp's and PVLR's training (the reference adds RandAugment and Cutout, which this leaves
out). Each view's random draws come from its own generator, seeded by (``seed``, image id, view index), so a view
is the same whatever the shard, process or worker that encodes it. A view's id in the cache is
``<image id>#view<k>`` and its labels are the image's.

Example:
    >>> views = ViewAugment(n=2, crop_scale=(0.5, 1.0), hflip=True, seed=0)
    >>> views.view_id("img7", 1), base_image_id("img7#view1")
    ('img7#view1', 'img7')
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from mlr_core.data.manifest import LabelledImages

VIEW_SEPARATOR = "#view"


def base_image_id(view_id: str) -> str:
    """The image id a view id (``<image id>#view<k>``) was made from."""
    return view_id.rsplit(VIEW_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class ViewAugment:
    n: int                          # views per image
    crop_scale: tuple[float, float]  # area fraction of the crop, (min, max)
    hflip: bool
    seed: int

    @classmethod
    def from_params(cls, section) -> "ViewAugment":
        return cls(n=section.n, crop_scale=(float(section.crop_scale[0]), float(section.crop_scale[1])),
                   hflip=section.hflip, seed=section.seed)

    def record(self) -> dict:
        """What determines the views' pixels (kept in the cache's metadata and its resume state)."""
        return {**asdict(self), "crop_scale": list(self.crop_scale)}

    @staticmethod
    def view_id(image_id: str, k: int) -> str:
        return f"{image_id}{VIEW_SEPARATOR}{k}"

    def _rng(self, view_id: str) -> np.random.Generator:
        digest = hashlib.sha256(f"{self.seed}|{view_id}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))

    def apply(self, im: Image.Image, view_id: str) -> Image.Image:
        """The view ``view_id`` of ``im`` (an RGB image): crop, resize back, maybe flip."""
        rng = self._rng(view_id)
        w, h = im.size
        lo, hi = self.crop_scale
        for _ in range(10):  # torchvision's RandomResizedCrop: 10 tries, then the whole image
            area = w * h * rng.uniform(lo, hi)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                break
        else:
            x, y, cw, ch = 0, 0, w, h
        out = im.resize((w, h), Image.Resampling.BICUBIC, box=(x, y, x + cw, y + ch))
        if self.hflip and rng.uniform() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return out

    def expand(self, data: LabelledImages) -> LabelledImages:
        """``data`` with each image repeated ``n`` times under its view ids (image-major: img0#view0, img0#view1,
        img1#view0, ...)."""
        rows = [i for i in range(len(data)) for _ in range(self.n)]
        expanded = data.select(rows)
        expanded.image_ids = [self.view_id(data.image_ids[i], k) for i in range(len(data)) for k in range(self.n)]
        return expanded
